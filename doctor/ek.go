package doctor

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// ekCheckName names the check of an EK kind's certificate: ek_cert_rsa_2048, ...
func ekCheckName(kind tpmrules.EKKind) string {
	return "ek_cert_" + strings.ToLower(strings.ReplaceAll(kind.Name, "-", "_"))
}

// checkEKs checks the EK certificate of each kind the TPM has one for, as the server
// will (verify.VerifyEKCert: it parses, certifies this TPM's EK, and with --ca chains to
// the manufacturer). A TPM without any EK certificate fails: the server admits it only
// through an allow list or allow_insecure.
func (h *host) checkEKs() {
	if h.t == nil {
		h.noTPM("ek_cert")
		return
	}
	eks, err := tpm.EndorsementKeys(h.t)
	if err != nil {
		h.add("ek_cert", Fail, err.Error(), "the TPM does not give its EK: clear it from the firmware setup if it is in lockout, or check it with tpm2_getcap handles-persistent")
		return
	}
	var bundle *verify.Bundle
	var bundleErr error
	if h.opts.CAPath != "" {
		bundle, _, bundleErr = verify.LoadBundle(h.opts.CAPath)
	}
	want := ""
	if h.attestor != nil {
		want = h.attestor.EKType
	}
	found := map[string]bool{}
	for _, ek := range eks {
		if ek.Certificate == nil {
			continue
		}
		found[ek.Kind.Name] = true
		h.checkEK(ek, bundle, bundleErr)
	}
	if len(found) == 0 {
		hash, _ := verify.EKHash(eks[0].PublicKey)
		h.add("ek_cert", Fail,
			fmt.Sprintf("no EK certificate in NV (RSA-2048 0x01C00002, ECC-P256 0x01C0000A, ECC-P384 0x01C00016 are not defined; EK RSA-2048 hash %s)", hash),
			"the server refuses a TPM without an EK certificate: add the EK hash to the server's ek_allowlist_path, "+
				"or write the manufacturer's certificate into NV (tpm2_nvdefine/tpm2_nvwrite at 0x01C00002)")
		return
	}
	if want != "" && !found[want] {
		kind, _ := tpmrules.EKKindNamed(want)
		h.add(ekCheckName(kind), Fail,
			fmt.Sprintf("the agent's ek_type is %s, but NV %s holds no certificate", want, tpmrules.FormatHandle(kind.CertIndex)),
			"set ek_type in the agent's plugin_data (and the server's) to a kind this TPM has a certificate for, or remove it")
	}
}

func (h *host) checkEK(ek tpm.EndorsementKey, bundle *verify.Bundle, bundleErr error) {
	name := ekCheckName(ek.Kind)
	where := fmt.Sprintf("NV %s", tpmrules.FormatHandle(ek.Kind.CertIndex))
	hash, err := verify.EKHash(ek.PublicKey)
	if err != nil {
		h.add(name, Fail, fmt.Sprintf("%s: %v", where, err), "")
		return
	}
	check, err := verify.VerifyEKCert(ek.Certificate, ek.PublicKey, bundle, h.now)
	switch {
	case check.Cert == nil:
		h.add(name, Fail, fmt.Sprintf("%s does not hold an EK certificate the server can read: %v", where, err),
			"the manufacturer's certificate is damaged or replaced: compare with `omens ek show --json` (certificate_nv) and ask the vendor")
		return
	case !check.KeyMatches:
		h.add(name, Fail, fmt.Sprintf("%s: %v", where, err), "the certificate in NV is not this TPM's: the server refuses it (ek_key_match)")
		return
	}
	c := check.Cert.Cert
	detail := fmt.Sprintf("%s, EK hash %s: issuer %s, valid until %s", where, hash, c.Issuer, c.NotAfter.UTC().Format(time.DateOnly))
	switch {
	case bundleErr != nil:
		h.add(name, Fail, detail+"; the CA bundle: "+bundleErr.Error(), "give --ca a PEM or DER file, or a directory of them")
	case bundle == nil && h.now.After(c.NotAfter):
		h.add(name, Fail, detail+"; expired", `the server refuses an expired EK certificate unless its expired_ek_cert = "warn"`)
	case bundle == nil:
		h.add(name, Warn, detail+"; chain not checked",
			"give --ca FILE, the manufacturer CA bundle the server's ca_path holds (for a simulated TPM, STATE/manufacturer-ca.pem)")
	case err != nil:
		next := "the server refuses it unless its ca_path holds the manufacturer's root and intermediates"
		if errors.Is(err, verify.ErrExpired) {
			next = `the server refuses an expired EK certificate unless its expired_ek_cert = "warn"`
		}
		h.add(name, Fail, detail+"; "+err.Error(), next)
	default:
		var chain []string
		for _, cert := range check.Chains[0][1:] {
			chain = append(chain, cert.Subject.CommonName)
		}
		h.pass(name, "%s; trusted (%s)", detail, strings.Join(chain, " <- "))
	}
}
