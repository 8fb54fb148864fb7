// Package tpmsim serves a simulated TPM: Microsoft's TPM 2.0 reference implementation
// (go-tpm-tools simulator) behind a unix socket that speaks raw TPM 2.0 commands, so that
// go-tpm's linuxudstpm, SPIRE's tpm_devid agent and omens itself open it like a device.
//
// A simulated host has a state directory holding its primary seed and its manufacturer:
// a root and intermediate CA (package mfgca) that issued its EK certificates, which are
// written into the TCG NV indices at its first start. The TPM's NV memory (seeds,
// persistent keys such as the AK and a DevID, NV indices) is saved in the state directory
// after every command that changed it and loaded at the next start, so a host whose process
// stopped or was killed comes back as after a power cut: same EK, same persistent keys,
// PCRs reset. A Reboot (TPM2_Shutdown, TPM2_Startup(CLEAR)) keeps the same.
//
// At every boot the simulator measures the host's boot profile (boot.json in the state
// directory: PCR index to event strings) with TPM2_PCR_Event, as firmware would; a
// Reboot may change the profile first, which is how the lab plays a BIOS update.
//
// A host may instead boot from a TCG boot event log (Options.BootLog), such as a real
// machine's binary_bios_measurements: the log is kept in the state directory
// (EventLogFile), served there to the agent, and at every boot each of its events is
// extended into the PCRs with the digests it records (firmware.go), so that the log
// replays against the PCRs and a quote. A StartupLocality event starts PCR 0 at that
// locality (locality.go).
//
// Besides the TPM socket, a control socket (the TPM socket path + ".omens") takes one JSON
// request per connection: {"op":"reboot"} with optional "set" (new boot profile entries)
// or "boot_log" (a new boot log file to boot from), and {"op":"status"}.
package tpmsim
