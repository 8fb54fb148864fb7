# omens svid helper for step-ca on ca (spiffe://funlab.casa/step-ca), run as user step:
#   omens svid helper --config FILE
agent_address = "/run/spire-agent/public/api.sock"
cert_dir = "/run/step-ca/svid"
svid_file_name = "svid.pem"
svid_key_file_name = "svid_key.pem"
svid_bundle_file_name = "svid_bundle.pem"
renew_signal = "SIGHUP"
cmd = "/usr/bin/step-ca"
cmd_args = "/etc/step-ca/config/ca.json --password-file /etc/step-ca/password.txt"
