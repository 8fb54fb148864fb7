// Package enroll is the device side of DevID enrollment: it has the prover (package
// prover) create a DevID key in the host's TPM and prove the TPM, carries the exchange to
// the RA (package ra) over HTTPS, and writes what both omens and SPIRE's built-in
// tpm_devid agent plugin load: the certificate chain (devid_cert_path), the key's public
// and private blobs (devid_pub_path, devid_priv_path; the private blob is encrypted by the
// TPM's SRK and useless anywhere else), and, when asked, the key persisted at a handle
// (the plan's 0x81010002). It also renews the DevID when it is due (Renew, Watch).
//
// Files: enroll.go (Enroll and the files it writes), client.go (the RA's HTTP API and its
// refusals), renew.go (Load, Renew, Watch).
package enroll
