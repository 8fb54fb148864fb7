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
# A host needs ek_hash, devid_subject or both; with both, its agent must show both,
# except in phase ek (its agent attests without its DevID): the EK hash alone.
#
# Each workload becomes an entry with its spiffe_id and selectors, parented on its host's
# alias, spiffe://funlab.casa/agent/<host>.
#
# Entries omens creates carry the hint "omens:host:<name>" or "omens:workload:<name>";
# --prune deletes only those. Hand-made entries are never changed or deleted.
#
# The same file drives `omens config render --inventory tower.hcl --host NAME --out /`,
# which writes that host's SPIRE configuration, the RA's settings and the systemd units
# (see the README). It reads the spire_server, ra and step_ca blocks, the paths (every
# one optional: the defaults are the Debian package's layout) and each host's phase:
#   phase = "join_token"  the agent attests with a join token, as the Tower runs today
#   phase = "ek"          NodeAttestor "tpm" with the EK certificate (devid_mode = "ek_cert")
#   phase = "devid"       NodeAttestor "tpm" with the DevID from step-ca (devid_mode = "devid")
# The server keeps NodeAttestor "join_token" while a host is on one. Moving a host on (or
# back) is changing its phase and rendering again; `omens migrate rollback` does it for a
# host whose DevID fails. A host in phase ek while others are in devid (rolled back) is
# an EK-mode exception of the server, by its ek_hash (ek_mode_hosts_path).
#
# The EK hashes below are placeholders: put in those of your TPMs.

trust_domain = "funlab.casa"

# Where the SPIRE server runs and where agents reach it.
spire_server {
  host      = "spire"
  address   = "spire.funlab.casa"
  port      = 8081
  event_log = "verify"   # replay the boot event log agents send against their quote
  # expired_ek_cert = "warn"  # accept an expired EK certificate with the selector tpm:ek_cert:expired ("reject" by default)
}

# step-ca issues the DevID certificates; the RA enrolls them and runs beside it (it reads
# step-ca's ca.json for the provisioner's key).
step_ca {
  host        = "ca"
  url         = "https://ca.funlab.casa"
  provisioner = "tower-of-omens"
}

ra {
  host = "ca"
  url  = "https://ca.funlab.casa:8443"
}

# Where files live, for every host (a host's own paths block overrides these). Unset keys
# take their defaults; these are the defaults, written out.
paths {
  bin_dir       = "/usr/bin"            # omens
  plugin_dir    = "/usr/lib/omens"      # omens-attestor-server, omens-attestor-agent
  spire_bin_dir = "/opt/spire/bin"      # spire-server, spire-agent
  unit_dir      = "/lib/systemd/system"
  ek_ca         = "/etc/omens/tpm-ek-ca-certs"   # the TPM manufacturers' CAs
  step_ca_root  = "/etc/omens/step-ca-root.pem"  # the DevID CA
  pcr_policy    = "/etc/omens/pcr-policy.hcl"
}

# The SPIRE server's own machine. It runs OpenBao.
host "spire" {
  ek_hash    = "0000000000000000000000000000000000000000000000000000000000000001"
  pcr_policy = "tower"
  phase      = "devid"
}

# Recognised by its EK and by its DevID certificate together.
host "auth" {
  ek_hash       = "0000000000000000000000000000000000000000000000000000000000000002"
  devid_subject = "auth.funlab.casa"
  pcr_policy    = "tower"
  phase         = "devid"
}

# step-ca's machine, recognised by its DevID certificate alone.
host "ca" {
  devid_subject = "ca.funlab.casa"
  pcr_policy    = "tower"
  phase         = "join_token"
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
