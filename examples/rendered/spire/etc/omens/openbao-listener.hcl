# The files omens svid helper writes; OpenBao reloads them on SIGHUP.
listener "tcp" {
  address            = "0.0.0.0:8200"
  tls_cert_file      = "/run/openbao/svid/svid.pem"
  tls_key_file       = "/run/openbao/svid/svid_key.pem"
  tls_client_ca_file = "/run/openbao/svid/svid_bundle.pem"
  tls_require_and_verify_client_cert = true
}
