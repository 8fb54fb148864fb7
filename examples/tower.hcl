# The Tower of Omens as code: `omens apply --file tower.hcl` registers it in SPIRE.
#
#   omens apply --file tower.hcl --dry-run     # print the diff, change nothing
#   omens apply --file tower.hcl               # make it so (a second run changes nothing)
#   omens apply --file tower.hcl --prune       # also delete entries omens made that are gone here
#
# Each host becomes a node alias spiffe://funlab.casa/agent/<host> (parent
# spiffe://funlab.casa/spire/server) on the selectors NodeAttestor "tpm" gives its agent:
#   ek_hash       -> tpm:pub_hash:<ek_hash>          (`omens ek show` prints it as "EK hash")
#   devid_subject -> tpm:devid:subject:cn:<subject>  (the CN of the host's DevID certificate)
#   pcr_policy    -> tpm:pcr_policy:<name>           (optional: the boot-state policy group)
# A host needs ek_hash, devid_subject or both; with both, its agent must show both.
#
# Each workload becomes an entry with its spiffe_id and selectors, parented on its host's
# alias, spiffe://funlab.casa/agent/<host>.
#
# Entries omens creates carry the hint "omens:host:<name>" or "omens:workload:<name>";
# --prune deletes only those. Hand-made entries are never changed or deleted.
#
# The EK hashes below are placeholders: put in those of your TPMs.

trust_domain = "funlab.casa"

# The SPIRE server's own machine. It runs OpenBao.
host "spire" {
  ek_hash    = "0000000000000000000000000000000000000000000000000000000000000001"
  pcr_policy = "tower"
}

# Recognised by its EK and by its DevID certificate together.
host "auth" {
  ek_hash       = "0000000000000000000000000000000000000000000000000000000000000002"
  devid_subject = "auth.funlab.casa"
  pcr_policy    = "tower"
}

# step-ca's machine, recognised by its DevID certificate alone.
host "ca" {
  devid_subject = "ca.funlab.casa"
  pcr_policy    = "tower"
}

workload "openbao" {
  host      = "spire"
  spiffe_id = "spiffe://funlab.casa/openbao"
  selectors = ["unix:user:openbao"]
}

workload "step-ca" {
  host      = "ca"
  spiffe_id = "spiffe://funlab.casa/step-ca"
  selectors = ["unix:user:step"]
}
