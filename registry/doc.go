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
// # Rendering a host's configuration
//
// The same file tells `omens config render` (package hostconf) what each host runs.
// These blocks are optional when parsing: an inventory without them is still one for
// omens apply, and a rendering that needs a missing one says which.
//
//	spire_server {
//	  host         = "spire"              # the host that runs it
//	  address      = "spire.funlab.casa"  # what agents dial
//	  port         = 8081                 # the default
//	  bind_address = "0.0.0.0"            # the default
//	  agent_ttl    = "1h"                 # optional: SPIRE's agent_ttl
//	  event_log    = "verify"             # optional: NodeAttestor "tpm"'s event_log
//	  expired_ek_cert = "warn"            # optional: NodeAttestor "tpm"'s; "reject" by default
//	}
//	step_ca {
//	  host        = "ca"
//	  url         = "https://ca.funlab.casa"   # its CRL is at URL/1.0/crl
//	  provisioner = "tower-of-omens"           # the default
//	}
//	ra {
//	  host   = "ca"                            # step-ca's host: the RA reads its ca.json
//	  url    = "https://ca.funlab.casa:8443"   # where devices enroll
//	  listen = ":8443"                         # the default: all addresses, URL's port
//	}
//	paths { ... }                              # see Paths and DefaultPaths
//
// A host block adds phase ("join_token", "ek" or "devid": the NodeAttestor its agent
// attests with), devid_handle (its DevID key's persistent handle, "0x81010002" by
// default) and a paths block of its own, over the top-level one. Paths are absolute and
// hold no spaces, quotes, backslashes, % or $ (they go into systemd units as they are).
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
