package stepca

// This file is the profile of the DevID certificates the RA gets from step-ca (IEEE
// 802.1AR LDevID), written once for both sides: the X.509 template that step-ca applies
// (DevIDTemplate), and the check of the certificate request that the RA forwards
// (CheckDevIDCSR).
//
// A DevID certificate carries exactly:
//   - subject: the host's name as the one common name, nothing else;
//   - subjectAltName: the host's name as the one DNS name;
//   - keyUsage: digitalSignature only. The DevID key is a TPM signing key (TCG "TPM 2.0
//     Keys for Device Identity and Attestation", 7.3.4: sign set, decrypt clear; omens'
//     and SPIRE's tpm_devid templates alike), so it cannot decrypt: keyEncipherment
//     would name a use the TPM refuses, for RSA keys as for ECC ones. SPIRE's tpm_devid
//     proves possession by signing the server's challenge, and TLS client
//     authentication signs too;
//   - extKeyUsage: clientAuth (a device authenticates as a client; SPIRE's tpm_devid
//     accepts any extended key usage, and omens' verifier too);
//   - no basicConstraints: not a CA;
//   - what step-ca adds to every certificate: the authority and subject key identifiers
//     and its provisioner extension (1.3.6.1.4.1.37476.9000.64.1, naming the provisioner).

import (
	"context"
	"crypto/x509"
	_ "embed"
	"encoding/asn1"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// DevIDTemplate is the X.509 template of the JWK provisioner whose key the RA holds
// (tower-of-omens). With it, step-ca takes the subject (the common name only) and the
// SANs from the one-time token and fixes key usage and extended key usage, whatever the
// certificate request asks: a request for CA:TRUE, code signing or more subject
// attributes gets a DevID certificate all the same. It is the defence in depth behind
// CheckDevIDCSR.
//
// The token's claim "omens_profile" (ProfileClaim) chooses between ProfileDevID, the
// default, and ProfileServer, the RA's own TLS certificate (serverAuth); the token is
// signed by the provisioner key, which only the RA holds.
//
// An operator installs it on their step-ca once (`omens ra template` prints it; it is the
// file ra/stepca/devid.tpl of the sources):
//
//	omens ra template > devid.tpl
//	step ca provisioner update tower-of-omens --x509-template devid.tpl
//
// (add --ca-config PATH for a ca.json elsewhere than $STEPPATH/config/ca.json), then
// restarts step-ca or sends it SIGHUP. Client.CheckTemplate tells whether a running
// step-ca has it.
//
//go:embed devid.tpl
var DevIDTemplate string

// Profiles of DevIDTemplate, chosen by the token's ProfileClaim.
const (
	ProfileClaim  = "omens_profile"
	ProfileDevID  = "devid"  // a DevID certificate: clientAuth
	ProfileServer = "server" // the RA's TLS certificate: serverAuth
)

// CheckDevIDCSRProfile is the RA's check that a DevID certificate request asks for
// nothing beyond the DevID profile.
const CheckDevIDCSRProfile = "devid_csr_profile"

// TemplateCommand is the command line (without the step executable) that installs the
// template file templateFile on provisioner in the step-ca configuration caConfig: the
// operator's command above, as the lab and the tests run it.
func TemplateCommand(provisioner, templateFile, caConfig string) []string {
	return []string{"ca", "provisioner", "update", provisioner, "--x509-template", templateFile, "--ca-config", caConfig}
}

var (
	oidCommonName       = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidSubjectAltName   = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidExtensionRequest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 14}
)

// oidNames names the OIDs a hostile request most likely holds, in messages.
var oidNames = map[string]string{
	"2.5.4.3":                    "CN",
	"2.5.4.5":                    "serialNumber",
	"2.5.4.6":                    "C",
	"2.5.4.7":                    "L",
	"2.5.4.8":                    "ST",
	"2.5.4.10":                   "O",
	"2.5.4.11":                   "OU",
	"0.9.2342.19200300.100.1.1":  "UID",
	"0.9.2342.19200300.100.1.25": "DC",
	"1.2.840.113549.1.9.1":       "emailAddress",
	"1.2.840.113549.1.9.2":       "unstructuredName",
	"1.2.840.113549.1.9.7":       "challengePassword",
	"2.5.29.14":                  "subjectKeyIdentifier",
	"2.5.29.15":                  "keyUsage",
	"2.5.29.17":                  "subjectAltName",
	"2.5.29.19":                  "basicConstraints",
	"2.5.29.30":                  "nameConstraints",
	"2.5.29.31":                  "cRLDistributionPoints",
	"2.5.29.32":                  "certificatePolicies",
	"2.5.29.37":                  "extKeyUsage",
	"1.3.6.1.5.5.7.1.1":          "authorityInfoAccess",
}

func oidName(oid asn1.ObjectIdentifier) string {
	if n := oidNames[oid.String()]; n != "" {
		return oid.String() + " (" + n + ")"
	}
	return oid.String()
}

// Tags of GeneralName (RFC 5280, 4.2.1.6), in messages.
var generalNames = []string{"otherName", "rfc822Name", "dNSName", "x400Address", "directoryName", "ediPartyName", "uniformResourceIdentifier", "iPAddress", "registeredID"}

// CheckDevIDCSR checks that csr, whose signature and key the caller has verified, asks for
// a DevID certificate of host and nothing more: a subject of one attribute, the common
// name host; no request attribute but extensionRequest; no requested extension but one
// subjectAltName, holding host as its one DNS name or nothing. A refusal names what
// is too much (the attribute or extension OID, the general name) and the value.
//
// step-ca would ignore all of it (DevIDTemplate); the RA refuses it anyway, so that a
// device that asks for more is seen, in the RA's log, for what it is.
func CheckDevIDCSR(csr *x509.CertificateRequest, host string) error {
	cns := 0
	for _, atv := range csr.Subject.Names {
		if !atv.Type.Equal(oidCommonName) {
			return profileError("CSR subject holds attribute %s = %q: a DevID subject is its host's common name only", oidName(atv.Type), fmt.Sprint(atv.Value))
		}
		cns++
		if v, ok := atv.Value.(string); !ok || v != host {
			return profileError("CSR subject common name %q is not the host %q", fmt.Sprint(atv.Value), host)
		}
	}
	if cns != 1 {
		return profileError("CSR subject holds %d common names, want 1 (%q)", cns, host)
	}

	attrs, err := csrAttributes(csr.RawTBSCertificateRequest)
	if err != nil {
		return profileError("CSR attributes: %w", err)
	}
	for _, oid := range attrs {
		if !oid.Equal(oidExtensionRequest) {
			return profileError("CSR holds attribute %s: a DevID request holds only its extension request", oidName(oid))
		}
	}
	// crypto/x509 refuses a request that asks for an extension twice.
	for _, ext := range csr.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			return profileError("CSR requests extension %s (critical %t): a DevID certificate's extensions are the CA's to set", oidName(ext.Id), ext.Critical)
		}
		if err := checkSAN(ext.Value, host); err != nil {
			return err
		}
	}
	return nil
}

// profileError is a refusal of CheckDevIDCSR, which names the check.
func profileError(format string, args ...any) error {
	return fmt.Errorf("stepca: "+CheckDevIDCSRProfile+": "+format, args...)
}

// checkSAN checks a subjectAltName extension's value: host as the one DNS name.
func checkSAN(der []byte, host string) error {
	var names []asn1.RawValue
	rest, err := asn1.Unmarshal(der, &names)
	if err != nil || len(rest) > 0 {
		return profileError("CSR subjectAltName does not parse (%v, %d trailing bytes)", err, len(rest))
	}
	if len(names) != 1 {
		var got []string
		for _, n := range names {
			got = append(got, generalName(n))
		}
		return profileError("CSR subjectAltName holds %d names [%s], want only DNS %q", len(names), strings.Join(got, ", "), host)
	}
	if n := names[0]; n.Class != asn1.ClassContextSpecific || n.Tag != 2 || string(n.Bytes) != host {
		return profileError("CSR subjectAltName holds %s, want only DNS %q", generalName(n), host)
	}
	return nil
}

// generalName shows a GeneralName: its kind and, for the text kinds, its value.
func generalName(n asn1.RawValue) string {
	kind := fmt.Sprintf("tag %d", n.Tag)
	if n.Class == asn1.ClassContextSpecific && n.Tag < len(generalNames) {
		kind = generalNames[n.Tag]
	}
	switch n.Tag {
	case 1, 2, 6:
		return fmt.Sprintf("%s %q", kind, n.Bytes)
	}
	return kind
}

// csrAttributes returns the attribute types of a CertificationRequestInfo (RFC 2986,
// 4.1), which crypto/x509 drops when their values are not what it expects.
func csrAttributes(tbs []byte) ([]asn1.ObjectIdentifier, error) {
	var info struct {
		Version    int
		Subject    asn1.RawValue
		PublicKey  asn1.RawValue
		Attributes []asn1.RawValue `asn1:"tag:0"`
	}
	rest, err := asn1.Unmarshal(tbs, &info)
	if err != nil {
		return nil, err
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("%d trailing bytes", len(rest))
	}
	var oids []asn1.ObjectIdentifier
	for _, a := range info.Attributes {
		var attr struct {
			Type   asn1.ObjectIdentifier
			Values asn1.RawValue `asn1:"set"`
		}
		if rest, err := asn1.Unmarshal(a.FullBytes, &attr); err != nil || len(rest) > 0 {
			return nil, fmt.Errorf("attribute does not parse (%v)", err)
		}
		oids = append(oids, attr.Type)
	}
	return oids, nil
}

// CheckTemplate asks step-ca for its provisioners (GET /1.0/provisioners) and checks that
// the client's provisioner has DevIDTemplate as its X.509 template, written into ca.json
// as `step ca provisioner update --x509-template` writes it. Without it, step-ca would
// issue certificates of its default template (serverAuth and clientAuth) and the RA's
// tokens' profiles would mean nothing: the RA refuses to run.
func (c *Client) CheckTemplate(ctx context.Context) error {
	fix := fmt.Sprintf("run `omens ra template > devid.tpl` and `step ca provisioner update %s --x509-template devid.tpl` on the step-ca host, then restart step-ca", c.Prov.Name)
	cursor := ""
	for range 100 { // pages of step-ca's default size (20): 2,000 provisioners
		var resp struct {
			Provisioners []struct {
				Type    string `json:"type"`
				Name    string `json:"name"`
				Options *struct {
					X509 *struct {
						Template     string `json:"template"`
						TemplateFile string `json:"templateFile"`
					} `json:"x509"`
				} `json:"options"`
			} `json:"provisioners"`
			NextCursor string `json:"nextCursor"`
		}
		path := "/1.0/provisioners"
		if cursor != "" {
			path += "?cursor=" + url.QueryEscape(cursor)
		}
		if err := c.do(ctx, "provisioners", http.MethodGet, path, nil, &resp); err != nil {
			return err
		}
		for _, p := range resp.Provisioners {
			if p.Name != c.Prov.Name || p.Type != "JWK" {
				continue
			}
			var tmpl, file string
			if p.Options != nil && p.Options.X509 != nil {
				tmpl, file = strings.TrimSpace(p.Options.X509.Template), p.Options.X509.TemplateFile
			}
			if tmpl != "" && !strings.HasPrefix(tmpl, "{") {
				// step-ca also reads a base64 template.
				if b, err := base64.StdEncoding.DecodeString(tmpl); err == nil {
					tmpl = strings.TrimSpace(string(b))
				}
			}
			switch {
			case tmpl == strings.TrimSpace(DevIDTemplate):
				return nil
			case tmpl != "":
				return fmt.Errorf("stepca: provisioner %q has another X.509 template than omens' DevID template: %s", c.Prov.Name, fix)
			case file != "":
				return fmt.Errorf("stepca: provisioner %q reads its X.509 template from %s, which cannot be checked from here: %s", c.Prov.Name, file, fix)
			default:
				return fmt.Errorf("stepca: provisioner %q has no X.509 template (step-ca's default would sign what a request asks for serverAuth and clientAuth alike): %s", c.Prov.Name, fix)
			}
		}
		if resp.NextCursor == "" {
			break
		}
		cursor = resp.NextCursor
	}
	return fmt.Errorf("stepca: step-ca at %s has no JWK provisioner %q", c.URL, c.Prov.Name)
}
