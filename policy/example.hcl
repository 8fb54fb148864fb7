# omens PCR boot-state policy (HCL, as SPIRE's own configuration).
#
# The SPIRE server plugin reads this file at every attestation and follows edits without a
# restart. Run-time state (pins made through windows, the last boot state of each host)
# lives beside it in example.hcl.state.json. Show both with
#   omens pcr policy show --policy example.hcl

# Hosts this file does not list: "reject" (the default) refuses them; a group name applies
# that group's sets to them. A genuine TPM is not yet a member of the fleet, so list hosts.
unknown_hosts = "reject"

# A group holds allowed sets. A boot state is allowed when it matches one set: every PCR
# the set names has that value. Two sets at once let a fleet roll a firmware update.
group "tower" {
  # Boot rules: over what the verifier proved from the replayed event log (the plugin's
  # event_log = "verify" or "require"; PCRs 4 and 7 quoted). Every rule set must hold.
  boot {
    secure_boot = "required"
    # PCR 4 boot applications before the last: shim, grub (hex, in the quoted bank).
    boot_loaders = [
      "94a1ec3d1d2c6cd6e4f6a1f8f4c1ad0f3e2f6dc3b1b0e5a7f0c9d8e7b6a59483", # shim 15.8
      "5e4c2a7b9d8f6e1c3a5b7d9f0e2c4a6b8d0f1e3c5a7b9d1f3e5c7a9b1d3f5e7a", # grub 2.12
    ]
    # The last PCR 4 boot application: approve the next kernel before the hosts reboot.
    kernels = [
      "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0", # 6.8.0-49
      "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809", # 6.8.0-50
    ]
    # SHA-256 of the db certificates that may have verified the boot chain.
    authorities = ["e30bf3c1e2b2b1f9d5a7e3b6f6c1f0a0b2c3d4e5f60718293a4b5c6d7e8f9012"]
    # The dbx must hold at least these image hashes (it may hold more).
    dbx_includes = ["aa55aa55aa55aa55aa55aa55aa55aa55aa55aa55aa55aa55aa55aa55aa55aa55"]
  }

  set "firmware-1.0" {
    bank = "sha256" # sha1, sha256 (default) or sha384
    pcrs = {
      "0" = "28ab1fc05f51ce061c59a8032ea56d7170e2a7f17a000a57030cc2e80d32733c" # firmware code
      "2" = "f4187699632a4ed4e1e7109b53ae92af2b82d4fac17d22e21f5da20cd96c4434" # option ROMs
      "4" = "51af6df54df0971b313584773964f7c7c8b8470c865b12c7020e64ba7ce0f140" # boot loader
      "7" = "0d7a44bdcabb43cb1c49671a15a3c39896c8129b33dae0ee7b72a40c0ab5ff22" # Secure Boot policy
    }
  }
  set "firmware-1.1" {
    pcrs = {
      "0" = "c300ef2c1967c123b73c3205206ef3d8812873b4aad774310c779c1c99e04e16"
      "2" = "9471365521cea078ad00b026d7e395b0573447985cab70134fc61ccb99aaf800"
      "4" = "51af6df54df0971b313584773964f7c7c8b8470c865b12c7020e64ba7ce0f140"
      "7" = "0d7a44bdcabb43cb1c49671a15a3c39896c8129b33dae0ee7b72a40c0ab5ff22"
    }
  }
}

# A host is a TPM, named by its EK hash (64 hex digits, as `omens ek show` prints it).
# name is a label for people and for `omens pcr allow-next --host spire`.
host "28c2c15f8bd3e630a2804fb236de72d14877fec0061cfb70caf0a5e5548df91f" {
  name  = "spire"
  group = "tower"
}

# A host may have sets of its own, tried before its group's (selector tpm:pcr_policy:host).
host "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" {
  name  = "auth"
  group = "tower"
  set "lab" {
    pcrs = {
      "0" = "1a67d54c1e12668bfa8cd6d8f23eada8562a332d2b483574c3c83356cbfa4e48"
      "7" = "642cbd8a508c8afb32a0a73902fb98421400945eaa9ad59059afdc6f3b821db3"
    }
  }
}

# A host with no group and no sets is allowed only through a window: open one with
#   omens pcr allow-next --policy example.hcl --host ca --for 2h
# and its next boot state is pinned.
host "4e07408562bedb8b60ce05c1decfe3ad16b72230967de01f640b7e4729b49fce" {
  name = "ca"
}
