{{- /*
  omens: the X.509 template of step-ca's JWK provisioner "tower-of-omens".

  Every field comes from the one-time token, which only the RA can sign, or is fixed here;
  nothing comes from the certificate request but its public key. The request's subject
  attributes, extensions (basic constraints, key usage, extended key usage, policies, ...)
  and SANs are never copied.

  The token's claim "omens_profile" picks the profile: "devid" (the default: a DevID
  certificate, for a device to authenticate as a TLS client) or "server" (the RA's own
  TLS certificate). Any other value is refused.

  Install it with:
    step ca provisioner update tower-of-omens --x509-template devid.tpl
  then restart step-ca (or send it SIGHUP).
*/ -}}
{{- $profile := default "devid" .Token.omens_profile -}}
{{- if not (has $profile (list "devid" "server")) -}}
{{- fail (printf "omens: unknown certificate profile %v" $profile) -}}
{{- end -}}
{
	"subject": {"commonName": {{ toJson .Subject.CommonName }}},
	"sans": {{ toJson .SANs }},
{{- if eq $profile "server" }}
{{- if typeIs "*rsa.PublicKey" .Insecure.CR.PublicKey }}
	"keyUsage": ["digitalSignature", "keyEncipherment"],
{{- else }}
	"keyUsage": ["digitalSignature"],
{{- end }}
	"extKeyUsage": ["serverAuth"]
{{- else }}
	"keyUsage": ["digitalSignature"],
	"extKeyUsage": ["clientAuth"]
{{- end }}
}
