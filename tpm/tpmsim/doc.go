// Package tpmsim serves a simulated TPM: Microsoft's TPM 2.0 reference implementation
// (go-tpm-tools simulator) behind a unix socket that speaks raw TPM 2.0 commands, so that
// go-tpm's linuxudstpm, SPIRE's tpm_devid agent and omens itself open it like a device.
//
// A simulated host has a state directory holding its primary seed and its manufacturer:
// a root and intermediate CA (package mfgca) that issued its EK certificates, which are
// written into the TCG NV indices at every start. The seed makes the EK the same after a
// restart, so the host keeps its EK and certificate. What the reference simulator keeps
// only in memory (persistent handles such as the AK, the SRK seed) lasts until the process
// exits; a Reboot (PCRs reset, TPM2_Startup(CLEAR)) keeps it.
//
// At every boot the simulator measures the host's boot profile (boot.json in the state
// directory: PCR index to event strings) with TPM2_PCR_Event, as firmware would; a
// Reboot may change the profile first, which is how the lab plays a BIOS update.
//
// Besides the TPM socket, a control socket (the TPM socket path + ".omens") takes one JSON
// request per connection: {"op":"reboot"} with optional "set" (new boot profile entries),
// and {"op":"status"}.
package tpmsim
