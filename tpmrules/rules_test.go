package tpmrules_test

import (
	"slices"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"omens.dev/omens/tpmrules"
)

// The templates omens creates keys from pass the rules the verifier applies.
func TestTemplatesPassTheirRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		lack []string
	}{
		{"AK", tpmrules.AKAttributesLack(tpmrules.AKTemplate.ObjectAttributes)},
		{"DevID RSA", tpmrules.DevIDAttributesLack(tpmrules.DevIDTemplateRSA.ObjectAttributes)},
		{"DevID ECC", tpmrules.DevIDAttributesLack(tpmrules.DevIDTemplateECC.ObjectAttributes)},
		{"EK RSA-2048", tpmrules.EKAttributesLack(tpmrules.EKRSA2048.Template.ObjectAttributes)},
		{"EK ECC-P256", tpmrules.EKAttributesLack(tpmrules.EKECCP256.Template.ObjectAttributes)},
		{"EK ECC-P384", tpmrules.EKAttributesLack(tpmrules.EKECCP384.Template.ObjectAttributes)},
	} {
		if len(tc.lack) != 0 {
			t.Errorf("%s template lacks %v", tc.name, tc.lack)
		}
	}
	for _, k := range tpmrules.EKKinds {
		if got := tpmrules.EKType(&k.Template); got != k.Name {
			t.Errorf("EKType(%s template) = %q", k.Name, got)
		}
	}
}

// Each role refuses the others' keys, naming what is missing.
func TestRolesRefuseOtherKeys(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  []string
		want []string
	}{
		{"SRK as AK", tpmrules.AKAttributesLack(tpmrules.SRKTemplateRSA.ObjectAttributes), []string{"sign", "not decrypt"}},
		{"SRK as DevID", tpmrules.DevIDAttributesLack(tpmrules.SRKTemplateECC.ObjectAttributes), []string{"sign", "not restricted", "not decrypt"}},
		{"AK as DevID", tpmrules.DevIDAttributesLack(tpmrules.AKTemplate.ObjectAttributes), []string{"not restricted"}},
		{"DevID as AK", tpmrules.AKAttributesLack(tpmrules.DevIDTemplateECC.ObjectAttributes), []string{"restricted"}},
		{"AK as EK", tpmrules.EKAttributesLack(tpmrules.AKTemplate.ObjectAttributes), []string{"decrypt", "not sign"}},
	} {
		if !slices.Equal(tc.got, tc.want) {
			t.Errorf("%s: lacks %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestSigningScheme(t *testing.T) {
	pss := tpmrules.DevIDTemplateRSA
	pss.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
		Scheme: tpm2.TPMTRSAScheme{
			Scheme:  tpm2.TPMAlgRSAPSS,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSAPSS, &tpm2.TPMSSigSchemeRSAPSS{HashAlg: tpm2.TPMAlgSHA384}),
		},
		KeyBits: 2048,
	})
	for _, tc := range []struct {
		name   string
		pub    tpm2.TPMTPublic
		scheme tpm2.TPMIAlgSigScheme
		hash   tpm2.TPMIAlgHash
	}{
		{"AK", tpmrules.AKTemplate, tpm2.TPMAlgECDSA, tpm2.TPMAlgSHA256},
		{"DevID RSA", tpmrules.DevIDTemplateRSA, tpm2.TPMAlgRSASSA, tpm2.TPMAlgSHA256},
		{"RSAPSS", pss, tpm2.TPMAlgRSAPSS, tpm2.TPMAlgSHA384},
	} {
		scheme, hash, err := tpmrules.SigningScheme(&tc.pub)
		if err != nil || scheme != tc.scheme || hash != tc.hash {
			t.Errorf("%s: %v %v %v, want %v %v", tc.name, scheme, hash, err, tc.scheme, tc.hash)
		}
	}
	if _, _, err := tpmrules.SigningScheme(&tpmrules.SRKTemplateRSA); err == nil {
		t.Error("an SRK (no signing scheme) has a signing hash")
	}
}

func TestParsePersistentHandle(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want tpm2.TPMHandle
		err  string
	}{
		{in: "0x81010002", want: 0x81010002},
		{in: "0X8101000a", want: 0x8101000A},
		{in: "81000001", want: 0x81000001},
		{in: "0x01000000", err: `"0x01000000" is not a persistent handle (0x81000000 to 0x81FFFFFF)`},
		{in: "0x1_0000_0000", err: `"0x1_0000_0000" is not a persistent handle (0x81000000 to 0x81FFFFFF)`},
		{in: "", err: `"" is not a persistent handle (0x81000000 to 0x81FFFFFF)`},
	} {
		h, err := tpmrules.ParsePersistentHandle(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%q: %v, want %s", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || h != tc.want {
			t.Errorf("%q: 0x%08X %v, want 0x%08X", tc.in, uint32(h), err, uint32(tc.want))
		}
		if got := tpmrules.FormatHandle(h); got != tpmrules.FormatHandle(tc.want) || len(got) != 10 {
			t.Errorf("FormatHandle(0x%08X) = %q", uint32(h), got)
		}
	}
}

func TestBanksAndDefaults(t *testing.T) {
	b, err := tpmrules.ParseBank(tpmrules.DefaultPCRBank)
	if err != nil || b.Alg != tpm2.TPMAlgSHA256 || b.Size != 32 {
		t.Fatalf("default bank: %+v %v", b, err)
	}
	if _, err := tpmrules.ParseBank("md5"); err == nil || err.Error() != `unknown PCR bank "md5" (want sha1, sha256 or sha384)` {
		t.Errorf("md5: %v", err)
	}
	if got := tpmrules.BankName(tpm2.TPMAlgSHA384); got != "sha384" {
		t.Errorf("BankName(SHA-384) = %q", got)
	}
	d := tpmrules.DefaultPCRs()
	d[0] = 99
	if got := tpmrules.DefaultPCRs(); !slices.Equal(got, []int{0, 2, 4, 7}) {
		t.Errorf("DefaultPCRs after a caller changed its copy: %v", got)
	}
	sel := tpmrules.PCRSelection(b, []int{0, 7, 23})
	if got := tpmrules.SelectedPCRs(sel); !slices.Equal(got[tpm2.TPMAlgSHA256], []int{0, 7, 23}) || len(got) != 1 {
		t.Errorf("SelectedPCRs(PCRSelection(sha256 0,7,23)) = %v", got)
	}
}
