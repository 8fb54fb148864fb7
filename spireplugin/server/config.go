package server

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/jackc/pgx/v5"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"omens.dev/omens/internal/limits"
	"omens.dev/omens/protocol"
	"omens.dev/omens/spireplugin"
	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

// Config is the plugin_data of the server's NodeAttestor "tpm". The keys of the Tower's
// plan (devid_mode, ca_path, allow_insecure) work as written; in DevID mode, those of
// SPIRE's tpm_devid (devid_ca_path, endorsement_ca_path) mean the same here; and those of
// the earlier external SPIRE TPM plugin (spire-tpm-plugin: ca_path, hash_path) too, with
// the same agent IDs and tpm:pub_hash selectors, so its users change only plugin_cmd.
type Config struct {
	// DevIDMode is "ek_cert" (EK certificate mode) or "devid" (the EK checks, plus a DevID
	// certificate and the DevID key's TPM2_Certify by the AK). Absent, it is "devid" when
	// devid_ca_path is set (the plan's DevID-phase block names no devid_mode; Configure
	// logs the choice), "ek_cert" otherwise.
	DevIDMode string `hcl:"devid_mode"`
	// devIDModeInferred is set when DevIDMode came from devid_ca_path.
	devIDModeInferred bool
	// CAPath is the TPM manufacturer CA bundle: a PEM or DER file, or a directory of them.
	// EndorsementCAPath is the same, under tpm_devid's name; set either (both only when
	// they are the same).
	CAPath            string `hcl:"ca_path"`
	EndorsementCAPath string `hcl:"endorsement_ca_path"`
	// DevIDCAPath is the DevID CA bundle (step-ca's root and intermediate), a PEM or DER
	// file or a directory; required in DevID mode.
	DevIDCAPath string `hcl:"devid_ca_path"`
	// DevIDCRLPath is a CRL of the DevID issuing CA (DER or PEM), re-read when it changes.
	// DevIDCRLURL is where it is fetched over HTTPS, trusting the DevID CA's roots
	// (step-ca serves it at https://CA/1.0/crl), again at its nextUpdate or every 5
	// minutes, whichever comes first. With both, the newer CRL is used. With either, no
	// CRL means no attestation.
	DevIDCRLPath string `hcl:"devid_crl_path"`
	DevIDCRLURL  string `hcl:"devid_crl_url"`
	// DevIDCRLRefreshInterval replaces the 5 minutes after which devid_crl_url is fetched
	// again ("30s", "1m"): the longest a revocation goes unseen, unless the CRL's
	// nextUpdate comes first.
	DevIDCRLRefreshInterval string `hcl:"devid_crl_refresh_interval"`
	crlRefresh              time.Duration
	// AllowInsecure accepts a TPM without a valid EK certificate whose EK is not
	// allow-listed, with a warning at every such attestation and the selector
	// tpm:ek_cert:insecure. For tests only.
	AllowInsecure bool `hcl:"allow_insecure"`
	// EKAllowlistPath and EKDenylistPath are files of EK hashes, one per line (# comments).
	EKAllowlistPath string `hcl:"ek_allowlist_path"`
	EKDenylistPath  string `hcl:"ek_denylist_path"`
	// HashPath is spire-tpm-plugin's allow list: a directory of (empty) files, each named
	// by the EK hash of an allowed TPM (loadHashDir). It allows like ek_allowlist_path,
	// and with it, their union.
	HashPath string `hcl:"hash_path"`
	// EKModeHostsPath, in DevID mode, is a file of EK hashes (one per line, # comments, as
	// ek_allowlist_path) of the TPMs also accepted in EK mode: hosts rolled back from
	// DevID mode while the others stay on it (omens migrate rollback --to ek). Such a TPM
	// still needs an EK certificate that verifies against ca_path and the credential
	// activation; it gets the selector tpm:mode:ek_cert. Re-read when it changes.
	EKModeHostsPath string `hcl:"ek_mode_hosts_path"`
	// RequireEKCertAndAllowlist asks for both a valid EK certificate and an allow-listed EK.
	RequireEKCertAndAllowlist bool `hcl:"require_ek_cert_and_allowlist"`
	// PCRBank and PCRSelection are what every agent must quote (sha256 and 0,2,4,7 by
	// default, the plan's choice).
	PCRBank      string `hcl:"pcr_bank"`
	PCRSelection []int  `hcl:"pcr_selection"`
	// PCRPolicyPath is the boot-state policy file (package policy); empty means no policy:
	// PCR values become selectors only. PCRStatePath is its state file (pins, windows,
	// last seen), by default PCRPolicyPath + ".state.json".
	PCRPolicyPath string `hcl:"pcr_policy_path"`
	PCRStatePath  string `hcl:"pcr_state_path"`
	// PCRStateDatabase keeps that state in PostgreSQL instead (a postgres:// URL or a
	// libpq key=value string), for several SPIRE servers that serve one fleet: a window
	// opened for a host is honored by whichever server the host reaches, and pins once.
	// It may hold a password; logs name only its host and database.
	PCRStateDatabase string `hcl:"pcr_state_database"`
	// ExpiredEKCert is what an expired, otherwise trusted EK certificate gets: "reject"
	// (the default: its manufacturer no longer vouches for it) or "warn" (accept, log a
	// warning, add the selector tpm:ek_cert:expired).
	ExpiredEKCert string `hcl:"expired_ek_cert"`
	// EKType is the one EK type served: "RSA-2048" (the default: every PC Client TPM has
	// it), "ECC-P256", "ECC-P384", or "any". A TPM can hold a certified EK of each type,
	// and each is another agent ID (the EK hash): with one type, a ban or a deny-listed
	// hash keeps the chip out, not one of its keys; "any" gives that up, for a fleet whose
	// TPMs share no EK type.
	EKType string `hcl:"ek_type"`
	// EventLog is what the server does with the boot event log an agent sends: "ignore"
	// (the default), "verify" (a log, when sent, must replay to the quote and pass the
	// structural checks; an agent that sends none still attests) or "require" (and an
	// agent that sends none is refused). See verify.EventLogPolicy. A PCR policy with boot
	// rules needs "verify" or "require" (a configuration error otherwise).
	EventLog string `hcl:"event_log"`
	// EventLogAllowSHA1 accepts logs with SHA-1 digests only (some TPM 2.0 firmware writes
	// the TPM 1.2 format); they are refused otherwise.
	EventLogAllowSHA1 bool `hcl:"event_log_allow_sha1"`
}

// EKTypeAny is the ek_type value that accepts every EK type.
const EKTypeAny = "any"

// buildConfig parses and checks plugin_data, returning every problem.
func buildConfig(hclText string) (*Config, []string) {
	c := new(Config)
	notes, err := spireplugin.DecodeHCL(hclText, c)
	if err != nil {
		return nil, []string{err.Error()}
	}
	switch c.DevIDMode {
	case "":
		c.DevIDMode = protocol.ModeEKCert
		if c.DevIDCAPath != "" {
			c.DevIDMode, c.devIDModeInferred = protocol.ModeDevID, true
		}
	case protocol.ModeEKCert, protocol.ModeDevID:
	default:
		notes = append(notes, fmt.Sprintf("devid_mode %q is not supported (want %q or %q)", c.DevIDMode, protocol.ModeEKCert, protocol.ModeDevID))
	}
	caKey := "ca_path"
	switch {
	case c.EndorsementCAPath == "":
	case c.CAPath == "":
		c.CAPath, caKey = c.EndorsementCAPath, "endorsement_ca_path"
	case filepath.Clean(c.CAPath) != filepath.Clean(c.EndorsementCAPath):
		notes = append(notes, fmt.Sprintf("ca_path %q and endorsement_ca_path %q name different manufacturer bundles; set one of them", c.CAPath, c.EndorsementCAPath))
	}
	if c.CAPath == "" && !c.AllowInsecure && c.EKAllowlistPath == "" && c.HashPath == "" {
		notes = append(notes, "ca_path (or endorsement_ca_path) is required unless ek_allowlist_path, hash_path or allow_insecure is set")
	}
	if c.DevIDMode == protocol.ModeDevID && c.DevIDCAPath == "" {
		notes = append(notes, `devid_ca_path is required with devid_mode = "devid" (the DevID CA bundle: step-ca's root and intermediate)`)
	}
	if c.DevIDMode == protocol.ModeEKCert {
		for _, k := range []struct{ key, value string }{
			{"devid_ca_path", c.DevIDCAPath}, {"devid_crl_path", c.DevIDCRLPath}, {"devid_crl_url", c.DevIDCRLURL},
		} {
			if k.value != "" {
				notes = append(notes, fmt.Sprintf(`%s is set, but devid_mode is %q: set devid_mode = "devid" or remove it`, k.key, c.DevIDMode))
			}
		}
	}
	if c.EKModeHostsPath != "" && c.DevIDMode != protocol.ModeDevID {
		notes = append(notes, fmt.Sprintf(`ek_mode_hosts_path is set, but devid_mode is %q: EK-mode exceptions are for a server in DevID mode; remove it`, c.DevIDMode))
	}
	if c.EKModeHostsPath != "" && c.CAPath == "" {
		notes = append(notes, "ek_mode_hosts_path needs ca_path (or endorsement_ca_path): an EK-mode exception must present an EK certificate that verifies")
	}
	if c.DevIDCRLURL != "" {
		if u, err := url.Parse(c.DevIDCRLURL); err != nil || u.Scheme != "https" || u.Host == "" {
			notes = append(notes, fmt.Sprintf("devid_crl_url %q: want an https URL (step-ca serves its CRL at https://CA/1.0/crl)", c.DevIDCRLURL))
		}
	}
	c.crlRefresh = crlRefresh
	if r := c.DevIDCRLRefreshInterval; r != "" {
		d, err := time.ParseDuration(r)
		switch {
		case err != nil || d < time.Second:
			notes = append(notes, fmt.Sprintf("devid_crl_refresh_interval %q: want a duration of at least 1s, such as \"1m\"", r))
		case c.DevIDCRLURL == "":
			notes = append(notes, "devid_crl_refresh_interval is set without devid_crl_url")
		default:
			c.crlRefresh = d
		}
	}
	if c.RequireEKCertAndAllowlist && (c.CAPath == "" || c.EKAllowlistPath == "" && c.HashPath == "") {
		notes = append(notes, "require_ek_cert_and_allowlist needs both ca_path and ek_allowlist_path (or hash_path)")
	}
	for _, f := range []struct{ key, path string }{
		{caKey, c.CAPath}, {"ek_allowlist_path", c.EKAllowlistPath},
		{"ek_denylist_path", c.EKDenylistPath}, {"hash_path", c.HashPath}, {"ek_mode_hosts_path", c.EKModeHostsPath}, {"pcr_policy_path", c.PCRPolicyPath},
		{"devid_ca_path", c.DevIDCAPath}, {"devid_crl_path", c.DevIDCRLPath},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			notes = append(notes, fmt.Sprintf("%s: %v", f.key, err))
		}
	}
	if c.PCRBank == "" {
		c.PCRBank = tpmrules.DefaultPCRBank
	}
	if _, err := tpmrules.ParseBank(c.PCRBank); err != nil {
		notes = append(notes, "pcr_bank: "+err.Error())
	}
	if c.PCRSelection == nil {
		c.PCRSelection = tpmrules.DefaultPCRs()
	}
	if err := checkSelection(c.PCRSelection); err != nil {
		notes = append(notes, "pcr_selection: "+err.Error())
	}
	switch c.ExpiredEKCert {
	case "":
		c.ExpiredEKCert = "reject"
	case "reject", "warn":
	default:
		notes = append(notes, fmt.Sprintf("expired_ek_cert %q: want \"reject\" or \"warn\"", c.ExpiredEKCert))
	}
	switch c.EKType {
	case "":
		c.EKType = tpmrules.EKTypeRSA2048
	case tpmrules.EKTypeRSA2048, tpmrules.EKTypeECCP256, tpmrules.EKTypeECCP384, EKTypeAny:
	default:
		notes = append(notes, fmt.Sprintf("ek_type %q: want %q, %q, %q or %q", c.EKType,
			tpmrules.EKTypeRSA2048, tpmrules.EKTypeECCP256, tpmrules.EKTypeECCP384, EKTypeAny))
	}
	switch c.EventLog {
	case "":
		c.EventLog = verify.EventLogIgnore
	case verify.EventLogIgnore, verify.EventLogVerify, verify.EventLogRequire:
	default:
		notes = append(notes, fmt.Sprintf("event_log %q: want %q, %q or %q", c.EventLog, verify.EventLogIgnore, verify.EventLogVerify, verify.EventLogRequire))
	}
	if c.EventLogAllowSHA1 && c.EventLog == verify.EventLogIgnore {
		notes = append(notes, `event_log_allow_sha1 is set, but event_log is "ignore": set event_log = "verify" or "require"`)
	}
	if c.PCRStatePath != "" && c.PCRPolicyPath == "" {
		notes = append(notes, "pcr_state_path is set without pcr_policy_path")
	}
	if c.PCRStateDatabase != "" {
		if c.PCRPolicyPath == "" {
			notes = append(notes, "pcr_state_database is set without pcr_policy_path")
		}
		if c.PCRStatePath != "" {
			notes = append(notes, "pcr_state_path and pcr_state_database are both set: the state lives in one of them")
		}
		if _, err := pgx.ParseConfig(c.PCRStateDatabase); err != nil {
			// Not err: pgx may quote the string, and with it the password.
			notes = append(notes, "pcr_state_database does not parse: want postgres://USER[:PASSWORD]@HOST[:PORT]/DB or host=... dbname=...")
		}
	}
	return c, notes
}

func checkSelection(pcrs []int) error {
	if len(pcrs) == 0 {
		return fmt.Errorf("empty: select at least one PCR")
	}
	if !slices.IsSorted(pcrs) || len(slices.Compact(slices.Clone(pcrs))) != len(pcrs) {
		return fmt.Errorf("%v: list distinct PCRs in ascending order", pcrs)
	}
	if pcrs[0] < 0 || pcrs[len(pcrs)-1] >= tpmrules.NumPCRs {
		return fmt.Errorf("%v: PCR indices are 0 to 23", pcrs)
	}
	return nil
}

// watched is a file (or directory) re-read when it changes, so bundles and lists are
// updated without restarting SPIRE. A failed reload keeps the last good content and
// reports the error.
type watched[T any] struct {
	path  string
	load  func(string) (T, error)
	stamp string
	value T
}

func (w *watched[T]) get() (T, error) {
	stamp, err := fileStamp(w.path)
	if err != nil {
		return w.value, err
	}
	if stamp == w.stamp {
		return w.value, nil
	}
	v, err := w.load(w.path)
	if err != nil {
		return w.value, err
	}
	w.value, w.stamp = v, stamp
	return v, nil
}

// fileStamp identifies a version of a file or of a directory tree by names, sizes and
// modification times.
func fileStamp(path string) (string, error) {
	var b strings.Builder
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s|%d|%d\n", p, info.Size(), info.ModTime().UnixNano())
		return nil
	})
	return b.String(), err
}

// loadHashList reads a file of EK hashes (parseHashList), capped by limits.HashList.
func loadHashList(path string) (map[string]bool, error) {
	b, err := limits.ReadFile(path, limits.HashList)
	if err != nil {
		return nil, err
	}
	return parseHashList(path, b)
}

// parseHashList parses a list of EK hashes: one hex SHA-256 per line (either case, kept
// in lower case), blank lines and # comments ignored; name labels its errors.
func parseHashList(name string, b []byte) (map[string]bool, error) {
	out := map[string]bool{}
	for n, rest := 1, b; len(rest) > 0; n++ {
		var raw []byte
		raw, rest, _ = bytes.Cut(rest, []byte("\n"))
		line := string(raw)
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.ToLower(strings.TrimSpace(line))
		if line == "" {
			continue
		}
		if len(line) != 64 || strings.Trim(line, "0123456789abcdef") != "" {
			if len(line) > 80 {
				line = line[:80] + "..."
			}
			return nil, fmt.Errorf("%s line %d: %q is not an EK hash (64 hex digits)", name, n, line)
		}
		out[line] = true
	}
	return out, nil
}

// loadHashDir reads spire-tpm-plugin's hash directory: each entry is named by the EK hash
// of an allowed TPM (64 hex digits, kept in lower case; the files' content is not read).
// Names starting with "." are skipped; any other name, or more than limits.HashDirEntries
// entries, is an error that names it.
func loadHashDir(path string) (map[string]bool, error) {
	d, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	entries, err := d.ReadDir(limits.HashDirEntries + 1)
	if err != nil && len(entries) == 0 && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(entries) > limits.HashDirEntries {
		return nil, fmt.Errorf("%s: more than %d entries, the limit for a hash directory", path, limits.HashDirEntries)
	}
	out := map[string]bool{}
	for _, e := range entries {
		h, err := hashDirEntry(path, e.Name())
		if err != nil {
			return nil, err
		}
		if h != "" {
			out[h] = true
		}
	}
	return out, nil
}

// hashDirEntry reads one name of a hash_path directory: an EK hash in either case (kept in
// lower case), or a hidden name (".", as editors and tools leave), skipped as "".
func hashDirEntry(dir, name string) (string, error) {
	if strings.HasPrefix(name, ".") {
		return "", nil
	}
	h := strings.ToLower(name)
	if len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		if len(name) > 80 {
			name = name[:80] + "..."
		}
		return "", fmt.Errorf("%s: entry %q is not named by an EK hash (64 hex digits)", dir, name)
	}
	return h, nil
}

func loadBundle(path string) (*verify.Bundle, error) {
	b, _, err := verify.LoadBundle(path)
	return b, err
}
