// Package registry talks to the SPIRE server API (spire-api-sdk) over the server's admin
// socket: registration as code (an inventory file applied as registration entries), the
// agents the server has attested, and what an operator does to them.
//
// # Inventory
//
// An inventory is an HCL file, in the syntax of SPIRE's own configuration, that names the
// trust domain, the hosts and the workloads (at most 4 MiB and 32 levels of nesting,
// package internal/limits):
//
//	trust_domain = "funlab.casa"
//
//	host "auth" {
//	  ek_hash       = "<sha256 of the EK public key, PKIX DER, 64 hex digits>"
//	  devid_subject = "auth.funlab.casa"
//	  pcr_policy    = "tower"
//	}
//
//	workload "openbao" {
//	  host      = "spire"
//	  spiffe_id = "spiffe://funlab.casa/openbao"
//	  selectors = ["unix:user:openbao"]
//	}
//
// A host needs ek_hash, devid_subject or both; pcr_policy is optional. Each host becomes a
// node alias: an entry with SPIFFE ID spiffe://<trust domain>/agent/<host> and parent
// spiffe://<trust domain>/spire/server, whose selectors are those the server's
// NodeAttestor "tpm" gives the host's agent:
//
//	ek_hash       -> tpm:pub_hash:<ek_hash>
//	devid_subject -> tpm:devid:subject:cn:<devid_subject>
//	pcr_policy    -> tpm:pcr_policy:<pcr_policy>
//
// An agent gets the alias when its selectors include all of them. Each workload becomes an
// entry with its spiffe_id and selectors (each "type:value") and parent
// spiffe://<trust domain>/agent/<host>. Names of hosts and workloads are unique; a
// workload's spiffe_id is in the trust domain. Every error names the file, the line and
// the key.
//
// # Managed entries
//
// The entries that omens creates carry a hint (the entry field that SPIRE hands to
// workloads with their SVIDs) of the form "omens:host:<name>" or "omens:workload:<name>".
// The hint prefix "omens:" is how Plan tells the entries it manages from hand-made ones:
// only managed entries are updated in place or pruned. The hint is unique per entry
// rather than a bare "omens" because a SPIRE agent hands a workload only one SVID per
// hint, and a workload may match several managed entries.
//
// A hand-made entry with the same parent, SPIFFE ID and selectors as an inventory entry is
// adopted (its hint is set); one with other selectors is left alone, and the inventory's
// entry is created beside it.
package registry
