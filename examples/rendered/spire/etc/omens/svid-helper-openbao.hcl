# omens svid helper for openbao on spire (spiffe://funlab.casa/openbao), run as user openbao:
#   omens svid helper --config FILE
agent_address = "/run/spire-agent/public/api.sock"
cert_dir = "/run/openbao/svid"
svid_file_name = "svid.pem"
svid_key_file_name = "svid_key.pem"
svid_bundle_file_name = "svid_bundle.pem"
renew_signal = "SIGHUP"
pid_file_name = "/run/openbao/openbao.pid"
