package stepca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/jose"

	"omens.dev/omens/internal/test/stepcatest"
	"omens.dev/omens/ra/stepca"
)

const host = "auth.funlab.casa"

// What step-ca answers to every token it refuses (the reason goes only to its log), and
// the reason it logs for a token ID (jti) it has seen before.
const (
	unauthorized = "stepca: sign: 401 Unauthorized: The request lacked necessary authorization to be completed. Please see the certificate authority logs for more info."
	tokenReused  = "authority.Authorize: authority.authorizeSign: token already used"
)

// startCA starts a step-ca and returns it with a client holding its provisioner key, read
// from ca.json as the RA reads it.
func startCA(t *testing.T) (*stepcatest.CA, *stepca.Client) {
	t.Helper()
	start := time.Now()
	ca := stepcatest.Start(t, stepcatest.Config{})
	t.Logf("step-ca healthy in %v", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	prov, err := stepca.LoadProvisioner(ca.CAConfig, ca.Provisioner, []byte(ca.ProvisionerPassword))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("provisioner key decrypted in %v", time.Since(start).Round(time.Millisecond))
	return ca, stepca.New(ca.URL, ca.RootPool, prov)
}

// newCSR returns a CSR of a new ECDSA P-256 key with common name cn and DNS SANs dns.
func newCSR(t *testing.T, cn string, dns ...string) *x509.CertificateRequest {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: cn},
		DNSNames: dns,
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// caLogSince returns step-ca's log lines after the first skip bytes that hold substr.
func caLogSince(ca *stepcatest.CA, skip int, substr string) []string {
	var out []string
	for _, l := range strings.Split(ca.Log()[skip:], "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

var logError = regexp.MustCompile(`error="([^"]*(?:\\.[^"]*)*)"`)

// caReason returns the error that step-ca logged for the last failed request since skip.
func caReason(ca *stepcatest.CA, skip int) string {
	lines := caLogSince(ca, skip, " error=")
	if len(lines) == 0 {
		return "(nothing logged)"
	}
	m := logError.FindStringSubmatch(lines[len(lines)-1])
	if m == nil {
		return lines[len(lines)-1]
	}
	return m[1]
}

// TestSign signs a CSR for auth.funlab.casa: the certificate has its name, the request's
// key, the provisioner's 90-day lifetime, and chains to the root through the returned
// intermediate. An explicit lifetime is honoured up to the provisioner's maximum.
func TestSign(t *testing.T) {
	ca, client := startCA(t)
	ctx := context.Background()
	csr := newCSR(t, host, host)

	start := time.Now()
	leaf, chain, err := client.SignDevID(ctx, csr, host, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("signed in %v: serial %s, issuer %q", time.Since(start).Round(time.Millisecond), leaf.SerialNumber, leaf.Issuer.CommonName)
	if leaf.Subject.CommonName != host || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != host {
		t.Errorf("leaf CN %q, DNS SANs %v, want %s and [%s]", leaf.Subject.CommonName, leaf.DNSNames, host, host)
	}
	if len(leaf.IPAddresses)+len(leaf.URIs)+len(leaf.EmailAddresses) != 0 {
		t.Errorf("leaf has other SANs: %v %v %v", leaf.IPAddresses, leaf.URIs, leaf.EmailAddresses)
	}
	if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(csr.PublicKey) {
		t.Error("leaf is not for the CSR's key")
	}
	if life := time.Until(leaf.NotAfter); life < stepcatest.CertDuration-time.Minute || life > stepcatest.CertDuration {
		t.Errorf("leaf expires in %v, want about %v", life.Round(time.Second), stepcatest.CertDuration)
	}
	if len(chain) != 1 || chain[0].Subject.CommonName != "Tower of Omens CA Intermediate CA" {
		t.Fatalf("chain %v, want the intermediate", chain)
	}
	intermediates := x509.NewCertPool()
	intermediates.AddCert(chain[0])
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots: ca.RootPool, Intermediates: intermediates, DNSName: host,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		t.Fatal(err)
	}
	if top := chains[0][len(chains[0])-1]; !top.Equal(ca.Root) {
		t.Errorf("leaf chains to %q, want the CA's root", top.Subject)
	}

	leaf, _, err = client.SignDevID(ctx, newCSR(t, host, host), host, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if life := time.Until(leaf.NotAfter); life < 24*time.Hour-time.Minute || life > 24*time.Hour {
		t.Errorf("leaf with lifetime 24h expires in %v", life.Round(time.Second))
	}

	skip := len(ca.Log())
	_, _, err = client.SignDevID(ctx, newCSR(t, host, host), host, stepcatest.CertDuration+time.Hour)
	// step-ca backdates certificates by a minute, and counts it.
	wantErr := "stepca: sign: 403 Forbidden: The request was forbidden by the certificate authority: requested duration of 2161h1m0s is more than the authorized maximum certificate duration of 2160h1m0s."
	if err == nil || err.Error() != wantErr {
		t.Errorf("lifetime beyond the maximum:\n got %v\nwant %s", err, wantErr)
	}
	t.Logf("lifetime 2161h refused: %v; step-ca logged: %s", err, caReason(ca, skip))
}

// TestRefusedTokens shows that a token signs only the request whose identity it names,
// and only once.
func TestRefusedTokens(t *testing.T) {
	ca, client := startCA(t)
	ctx := context.Background()
	csr := newCSR(t, host, host)

	for _, tc := range []struct {
		name     string
		aud, sub string
		sans     []string
		wantErr  string
		wantLog  string // in the reason step-ca logged
	}{
		{
			name: "token for another host",
			aud:  client.SignAudience(), sub: "spire.funlab.casa", sans: []string{"spire.funlab.casa"},
			wantErr: "stepca: sign: 403 Forbidden: The request was forbidden by the certificate authority: certificate request does not contain the valid common name - got auth.funlab.casa, want [spire.funlab.casa spire.funlab.casa].",
			wantLog: "certificate request does not contain the valid common name",
		},
		{
			name: "token with the host's name but an extra SAN",
			aud:  client.SignAudience(), sub: host, sans: []string{host, "spire.funlab.casa"},
			wantErr: "stepca: sign: 403 Forbidden: The request was forbidden by the certificate authority: certificate request does not contain the valid DNS names - got [auth.funlab.casa], want [auth.funlab.casa spire.funlab.casa].",
			wantLog: "certificate request does not contain the valid DNS names",
		},
		{
			name: "revoke token used to sign",
			aud:  client.RevokeAudience(), sub: host, sans: []string{host},
			wantErr: unauthorized,
			wantLog: "jwk.authorizeToken; invalid jwk token audience claim (aud); want [step-certificate-authority https://127.0.0.1/1.0/sign",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ott, err := client.Prov.Token(tc.aud, tc.sub, tc.sans)
			if err != nil {
				t.Fatal(err)
			}
			skip := len(ca.Log())
			_, _, err = client.SignWithToken(ctx, csr, ott, 0)
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("\n got %v\nwant %s", err, tc.wantErr)
			}
			var se *stepca.Error
			if !errors.As(err, &se) {
				t.Errorf("%v is not a *stepca.Error", err)
			}
			if reason := caReason(ca, skip); !strings.Contains(reason, tc.wantLog) {
				t.Errorf("step-ca logged %q, want %q in it", reason, tc.wantLog)
			}
		})
	}

	t.Run("replayed token", func(t *testing.T) {
		subject, sans := stepca.Identity(csr)
		ott, err := client.Prov.Token(client.SignAudience(), subject, sans)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := client.SignWithToken(ctx, csr, ott, 0); err != nil {
			t.Fatalf("first use: %v", err)
		}
		skip := len(ca.Log())
		_, _, err = client.SignWithToken(ctx, csr, ott, 0)
		if err == nil || err.Error() != unauthorized {
			t.Errorf("second use:\n got %v\nwant %s", err, unauthorized)
		}
		if reason := caReason(ca, skip); reason != tokenReused {
			t.Errorf("step-ca logged %q, want %q", reason, tokenReused)
		}
	})
}

// TestRevokeCRLRestart revokes a certificate, finds it in the CRL that step-ca
// regenerated at the revocation, and restarts step-ca: the revocation survives, and a
// token minted before the restart is refused.
func TestRevokeCRLRestart(t *testing.T) {
	ca, client := startCA(t)
	ctx := context.Background()

	csr := newCSR(t, host, host)
	subject, sans := stepca.Identity(csr)
	ott, err := client.Prov.Token(client.SignAudience(), subject, sans)
	if err != nil {
		t.Fatal(err)
	}
	minted := time.Now()
	leaf, _, err := client.SignWithToken(ctx, csr, ott, 0)
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := client.SignDevID(ctx, newCSR(t, "spire.funlab.casa", "spire.funlab.casa"), "spire.funlab.casa", 0)
	if err != nil {
		t.Fatal(err)
	}

	before, err := client.CRL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(before.RevokedCertificateEntries); n != 0 {
		t.Fatalf("CRL lists %d certificates before any revocation", n)
	}

	start := time.Now()
	if err := client.Revoke(ctx, leaf.SerialNumber, stepca.ReasonCessationOfOperation, "host decommissioned"); err != nil {
		t.Fatal(err)
	}
	t.Logf("revoked serial %s in %v", leaf.SerialNumber, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	crl, err := client.CRL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("CRL fetched and checked in %v: number %s, this update %s, next update %s",
		time.Since(start).Round(time.Millisecond), crl.Number, crl.ThisUpdate.Format(time.RFC3339), crl.NextUpdate.Format(time.RFC3339))
	checkCRL(t, crl, leaf.SerialNumber, other.SerialNumber)
	if crl.Number.Cmp(before.Number) <= 0 {
		t.Errorf("CRL number %s after the revocation, was %s", crl.Number, before.Number)
	}

	skip := len(ca.Log())
	err = client.Revoke(ctx, leaf.SerialNumber, stepca.ReasonCessationOfOperation, "again")
	wantErr := "stepca: revoke: 400 Bad Request: The request could not be completed: certificate with serial number '" + leaf.SerialNumber.String() + "' is already revoked."
	if err == nil || err.Error() != wantErr {
		t.Errorf("second revocation:\n got %v\nwant %s", err, wantErr)
	}

	ca.Stop(t)
	// step-ca's start time and token iat claims count whole seconds: restart in a later
	// second than the token's, so that the token is older than the CA process.
	time.Sleep(time.Until(minted.Truncate(time.Second).Add(time.Second)))
	start = time.Now()
	ca.Start(t)
	t.Logf("step-ca started again in %v", time.Since(start).Round(time.Millisecond))

	crl, err = client.CRL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkCRL(t, crl, leaf.SerialNumber, other.SerialNumber)
	if err := client.Revoke(ctx, leaf.SerialNumber, stepca.ReasonCessationOfOperation, "again"); err == nil || err.Error() != wantErr {
		t.Errorf("revocation after the restart:\n got %v\nwant %s", err, wantErr)
	}
	// step-ca refuses any token issued before it started, before it looks at the jti.
	skip = len(ca.Log())
	_, _, err = client.SignWithToken(ctx, csr, ott, 0)
	if err == nil || err.Error() != unauthorized {
		t.Errorf("token used before the restart:\n got %v\nwant %s", err, unauthorized)
	}
	const issuedBefore = "authority.Authorize: authority.authorizeSign: token issued before the bootstrap of certificate authority"
	if reason := caReason(ca, skip); reason != issuedBefore {
		t.Errorf("token used before the restart: step-ca logged %q, want %q", reason, issuedBefore)
	}
	if err := client.Revoke(ctx, other.SerialNumber, stepca.ReasonSuperseded, "renewed"); err != nil {
		t.Fatalf("revoke after restart: %v", err)
	}
	crl, err = client.CRL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(crl.RevokedCertificateEntries) != 2 {
		t.Errorf("CRL lists %d certificates after the second revocation, want 2", len(crl.RevokedCertificateEntries))
	}
}

// checkCRL checks that crl lists revoked, for cessation of operation, and not kept.
func checkCRL(t *testing.T, crl *x509.RevocationList, revoked, kept *big.Int) {
	t.Helper()
	found := false
	for _, e := range crl.RevokedCertificateEntries {
		switch {
		case e.SerialNumber.Cmp(revoked) == 0:
			found = true
			if e.ReasonCode != stepca.ReasonCessationOfOperation {
				t.Errorf("CRL entry for %s has reason %d, want %d", revoked, e.ReasonCode, stepca.ReasonCessationOfOperation)
			}
		case e.SerialNumber.Cmp(kept) == 0:
			t.Errorf("CRL lists serial %s, which was not revoked", kept)
		}
	}
	if !found {
		t.Errorf("CRL (number %s, %d entries) does not list revoked serial %s", crl.Number, len(crl.RevokedCertificateEntries), revoked)
	}
}

// TestLoadProvisioner reads the provisioner key from ca.json and from a key file, and
// refuses what does not fit.
func TestLoadProvisioner(t *testing.T) {
	ca, _ := startCA(t)
	dir := t.TempDir()

	var conf map[string]any
	b, err := os.ReadFile(ca.CAConfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	prov := conf["authority"].(map[string]any)["provisioners"].([]any)[0].(map[string]any)
	// The encrypted key alone, as `step crypto jwk create` writes it (compact JWE).
	keyFile := filepath.Join(dir, "tower-of-omens.jwe")
	if err := os.WriteFile(keyFile, []byte(prov["encryptedKey"].(string)), 0o600); err != nil {
		t.Fatal(err)
	}
	// A ca.json whose provisioner's public key is another one's.
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	point, err := otherKey.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	prov["key"].(map[string]any)["x"] = base64.RawURLEncoding.EncodeToString(point[1:33])
	prov["key"].(map[string]any)["y"] = base64.RawURLEncoding.EncodeToString(point[33:])
	badConf := filepath.Join(dir, "ca.json")
	b, _ = json.Marshal(conf)
	if err := os.WriteFile(badConf, b, 0o600); err != nil {
		t.Fatal(err)
	}
	kid := prov["key"].(map[string]any)["kid"].(string)

	password := []byte(ca.ProvisionerPassword)
	for _, tc := range []struct {
		name, path, prov string
		password         []byte
		wantErr          string
	}{
		{name: "ca.json", path: ca.CAConfig, prov: "tower-of-omens", password: password},
		{name: "key file", path: keyFile, prov: "tower-of-omens", password: password},
		{name: "wrong password", path: ca.CAConfig, prov: "tower-of-omens", password: []byte("nope"),
			wantErr: `stepca: provisioner "tower-of-omens" in ` + ca.CAConfig + `: encryptedKey: failed to decrypt JWE: invalid password`},
		{name: "no password", path: keyFile, prov: "tower-of-omens",
			wantErr: `stepca: provisioner "tower-of-omens": failed to decrypt JWE: invalid password`},
		{name: "unknown provisioner", path: ca.CAConfig, prov: "acme",
			wantErr: `stepca: no provisioner "acme" in ` + ca.CAConfig + ` (provisioners: tower-of-omens)`},
		{name: "key of another provisioner", path: badConf, prov: "tower-of-omens", password: password,
			wantErr: `stepca: provisioner "tower-of-omens" in ` + badConf + `: encryptedKey (kid ` + kid + `) does not match the provisioner's key (kid ` + kid + `)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := stepca.LoadProvisioner(tc.path, tc.prov, tc.password)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("\n got %v\nwant %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Name != "tower-of-omens" || p.KeyID != kid {
				t.Errorf("provisioner %q kid %q, want tower-of-omens kid %s", p.Name, p.KeyID, kid)
			}
			// The key signs tokens that step-ca accepts.
			client := stepca.New(ca.URL, ca.RootPool, p)
			if _, _, err := client.SignDevID(context.Background(), newCSR(t, host, host), host, 0); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRootCertificates reads the CA's roots over TLS that trusts them.
func TestRootCertificates(t *testing.T) {
	ca, client := startCA(t)
	ctx := context.Background()
	roots, err := client.RootCertificates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(roots) != 1 || !roots[0].Equal(ca.Root) {
		t.Errorf("GET /1.0/roots: %d certificates", len(roots))
	}
}

// TestToken checks the claims of a one-time token, without a CA: a provisioner key made
// here, encrypted as `step crypto jwk create` does, signs it.
func TestToken(t *testing.T) {
	password := []byte("correct horse battery staple")
	jwk, jwe, err := jose.GenerateDefaultKeyPair(password)
	if err != nil {
		t.Fatal(err)
	}
	compact, err := jwe.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key.jwe")
	if err := os.WriteFile(keyFile, []byte(compact), 0o600); err != nil {
		t.Fatal(err)
	}
	prov, err := stepca.LoadProvisioner(keyFile, "tower-of-omens", password)
	if err != nil {
		t.Fatal(err)
	}
	if want := "tower-of-omens (kid " + jwk.KeyID + ")"; fmt.Sprintf("%v|%+v|%#v", prov, prov, prov) != want+"|"+want+"|"+want {
		t.Errorf("provisioner prints as %v|%+v|%#v, want %s", prov, prov, prov, want)
	}

	client := stepca.New("https://ca.funlab.casa:9000/", nil, prov)
	csr := newCSR(t, host, host)
	subject, sans := stepca.Identity(csr)
	before := time.Now().Truncate(time.Second)
	ott, err := prov.Token(client.SignAudience(), subject, sans)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jose.ParseSigned(ott)
	if err != nil {
		t.Fatal(err)
	}
	h := tok.Headers[0]
	if h.KeyID != jwk.KeyID || h.Algorithm != "ES256" || h.ExtraHeaders["typ"] != "JWT" {
		t.Errorf("header kid %q alg %q typ %v, want kid %s, ES256, JWT", h.KeyID, h.Algorithm, h.ExtraHeaders["typ"], jwk.KeyID)
	}
	var claims struct {
		jose.Claims
		SANs []string `json:"sans"`
	}
	pub := jwk.Public()
	if err := tok.Claims(&pub, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.Issuer != "tower-of-omens" || claims.Subject != host ||
		len(claims.Audience) != 1 || claims.Audience[0] != "https://ca.funlab.casa:9000/1.0/sign" ||
		len(claims.SANs) != 1 || claims.SANs[0] != host || len(claims.ID) != 64 {
		t.Errorf("claims %+v", claims)
	}
	nbf, exp := claims.NotBefore.Time(), claims.Expiry.Time()
	if nbf.Before(before) || nbf.After(time.Now()) || exp.Sub(nbf) != stepca.TokenValidity || !claims.IssuedAt.Time().Equal(nbf) {
		t.Errorf("iat %v nbf %v exp %v", claims.IssuedAt.Time(), nbf, exp)
	}
	if raw := rawClaims(t, ott, &pub); raw[stepca.ProfileClaim] != nil {
		t.Errorf("Token: claim %s = %v, want none", stepca.ProfileClaim, raw[stepca.ProfileClaim])
	}
	profiled, err := prov.ProfileToken(client.SignAudience(), subject, sans, stepca.ProfileServer)
	if err != nil {
		t.Fatal(err)
	}
	if raw := rawClaims(t, profiled, &pub); raw[stepca.ProfileClaim] != stepca.ProfileServer {
		t.Errorf("ProfileToken: claim %s = %v, want %s", stepca.ProfileClaim, raw[stepca.ProfileClaim], stepca.ProfileServer)
	}
	again, err := prov.Token(client.SignAudience(), subject, sans)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ = jose.ParseSigned(again)
	var second jose.Claims
	if err := tok.Claims(&pub, &second); err != nil || second.ID == claims.ID {
		t.Errorf("second token's jti %q (%v), first's %q: want a fresh one", second.ID, err, claims.ID)
	}
}

// rawClaims returns the claims of token, checked with key.
func rawClaims(t *testing.T, token string, key *jose.JSONWebKey) map[string]any {
	t.Helper()
	tok, err := jose.ParseSigned(token)
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := tok.Claims(key, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}
