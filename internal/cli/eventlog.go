package cli

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"omens.dev/omens/internal/limits"
	"slices"
	"strconv"
	"strings"

	"github.com/google/go-tpm/tpm2"
	"github.com/spf13/cobra"

	"omens.dev/omens/tpmrules"
	"omens.dev/omens/verify"
)

func newEventLogCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "eventlog",
		Short: "Show a boot event log and verify it against PCR values",
	}
	cmd.AddCommand(newEventLogShowCmd(), newEventLogVerifyCmd())
	return cmd
}

// EventLogShow is the JSON form of `omens eventlog show`. What it shows is what the log
// claims: the Secure Boot state and boot chain are those its own replay gives, as a TPM
// that measured this boot would prove them; only `omens eventlog verify` against a TPM's
// PCR values proves them.
type EventLogShow struct {
	Banks  []string                 `json:"banks"`
	Events []verify.LogEvent        `json:"events"`
	PCRs   []PCRValues              `json:"pcrs"`
	Facts  *verify.BootFacts        `json:"facts,omitempty"`
	Secure SecureBootShown          `json:"secure_boot"`
	Chain  []verify.BootApplication `json:"boot_chain"`
	// Check is "ok", or the structural check that refuses the log and why.
	Check string `json:"check"`
}

// SecureBootShown is the Secure Boot state of `omens eventlog show`: Enabled is false when
// the log proves no state.
type SecureBootShown struct {
	Enabled bool `json:"enabled"`
	*verify.SecureBootFacts
}

func readEventLog(path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("--log FILE is required")
	}
	b, err := limits.ReadFile(path, limits.EventLog)
	if err != nil {
		return nil, fmt.Errorf("event log: %w", err)
	}
	return b, nil
}

func newEventLogShowCmd() *cobra.Command {
	var logPath string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show --log FILE [--json]",
		Short: "Show a boot event log: events, banks, Secure Boot state, boot chain",
		Long: `Show a TCG boot event log (binary_bios_measurements): its banks and events, and the
Secure Boot state (PK, KEK, db, dbx, the authorities that verified the boot chain) and boot
chain (PCR 4) its own replay gives. Nothing shown is proven: "omens eventlog verify" checks
the log against a TPM's PCR values.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := readEventLog(logPath)
			if err != nil {
				return err
			}
			out, err := showEventLog(log)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			printEventLog(cmd, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&logPath, "log", "", "boot event log (binary_bios_measurements)")
	jsonFlag(cmd, &asJSON)
	return cmd
}

func showEventLog(log []byte) (*EventLogShow, error) {
	events, err := verify.EventLogEvents(log)
	if err != nil {
		return nil, err
	}
	banks, err := verify.EventLogPCRs(log)
	if err != nil {
		return nil, err
	}
	out := &EventLogShow{Events: events, Check: "ok", Chain: []verify.BootApplication{}}
	own := banks[0]
	for _, b := range banks {
		out.Banks = append(out.Banks, bankLabel(b.Alg))
		out.PCRs = append(out.PCRs, pcrValues(b))
		if b.Alg == tpm2.TPMAlgSHA256 {
			own = b
		}
	}
	facts, err := verify.ReplayEventLog(log, []verify.PCRBank{own}, verify.EventLogPolicy{AllowSHA1: true})
	if err != nil {
		out.Check = err.Error()
		return out, nil
	}
	out.Facts = facts
	if facts.SecureBoot != nil {
		out.Secure = SecureBootShown{Enabled: facts.SecureBoot.Enabled, SecureBootFacts: facts.SecureBoot}
	}
	if facts.BootApplications != nil {
		out.Chain = facts.BootApplications
	}
	return out, nil
}

func bankLabel(alg tpm2.TPMIAlgHash) string {
	if n := tpmrules.BankName(alg); n != "" {
		return n
	}
	return fmt.Sprintf("0x%04X", uint16(alg))
}

func pcrValues(b verify.PCRBank) PCRValues {
	v := PCRValues{Bank: bankLabel(b.Alg), PCRs: map[string]string{}}
	for p, d := range b.PCRs {
		v.PCRs[strconv.Itoa(p)] = hex.EncodeToString(d)
	}
	return v
}

func printEventLog(cmd *cobra.Command, s *EventLogShow) {
	w := cmd.OutOrStdout()
	bank := "sha256"
	if !slices.Contains(s.Banks, bank) {
		bank = s.Banks[0]
	}
	fmt.Fprintf(w, "banks: %s\nevents: %d\n\n", strings.Join(s.Banks, ", "), len(s.Events))
	tb := newTable(w)
	tb.row("#", "PCR", "TYPE", "SIZE", strings.ToUpper(bank))
	for i, e := range s.Events {
		tb.row(strconv.Itoa(i+1), strconv.Itoa(e.PCR), e.Type, strconv.Itoa(e.Size), e.Digests[bank])
	}
	tb.flush()
	fmt.Fprintln(w)
	if s.Check != "ok" {
		fmt.Fprintf(w, "refused: %s\n", s.Check)
		return
	}
	sb := s.Secure
	state := "disabled"
	if sb.Enabled {
		state = "enabled"
	}
	fmt.Fprintf(w, "secure boot: %s\n", state)
	if sb.SecureBootFacts != nil {
		for _, l := range []struct {
			name  string
			certs []verify.Certificate
		}{{"PK", sb.PK}, {"KEK", sb.KEK}, {"db", sb.DB}, {"authority", sb.Authorities}, {"driver authority", sb.DriverAuthorities}} {
			for _, c := range l.certs {
				fmt.Fprintf(w, "  %-16s %s  %s\n", l.name, c.SHA256, c.Subject)
			}
		}
		fmt.Fprintf(w, "  %-16s %d hashes, %d certificates\n", "dbx", len(sb.DBX), len(sb.DBXCerts))
	}
	fmt.Fprintln(w, "boot chain (PCR 4):")
	for _, a := range s.Chain {
		fmt.Fprintf(w, "  #%-3d %s  %s\n", a.Event, a.Digest, a.Type)
	}
	if s.Facts != nil && s.Facts.KernelCmdline != "" {
		fmt.Fprintf(w, "kernel command line: %s\n", s.Facts.KernelCmdline)
	}
}

// EventLogVerified is the JSON form of `omens eventlog verify`.
type EventLogVerified struct {
	OK bool `json:"ok"`
	// Check names the failed check ("" when OK), Error says why.
	Check string            `json:"check,omitempty"`
	Error string            `json:"error,omitempty"`
	Facts *verify.BootFacts `json:"facts,omitempty"`
}

func newEventLogVerifyCmd() *cobra.Command {
	var logPath, pcrsPath string
	var asJSON, allowSHA1 bool
	cmd := &cobra.Command{
		Use:   "verify --log FILE --pcrs FILE [--json]",
		Short: "Replay a boot event log against PCR values and run the structural checks",
		Long: `Replay a TCG boot event log against PCR values, as the server does at attestation, and
run its structural checks (separators of PCRs 0-7, Secure Boot variables). The PCR file is
what "omens pcr read --json" prints: one bank, or a JSON array of banks, each replayed on
its own. Exit status 1 names the failed check.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := readEventLog(logPath)
			if err != nil {
				return err
			}
			if pcrsPath == "" {
				return fmt.Errorf("--pcrs FILE is required")
			}
			banks, err := readPCRFile(pcrsPath)
			if err != nil {
				return err
			}
			facts, verr := verify.ReplayEventLog(log, banks, verify.EventLogPolicy{AllowSHA1: allowSHA1})
			res := EventLogVerified{OK: verr == nil, Facts: facts}
			if verr != nil {
				res.Check, res.Error = verify.FailedCheck(verr), verr.Error()
			}
			if asJSON {
				if err := writeJSON(cmd.OutOrStdout(), res); err != nil {
					return err
				}
				if verr != nil {
					return &exitError{code: 1}
				}
				return nil
			}
			if verr != nil {
				return &exitError{code: 1, msg: verr.Error()}
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "ok: the log replays to %s\n", describeBanks(banks))
			if facts.SecureBoot != nil {
				fmt.Fprintf(w, "secure boot: %v (%d authorities)\n", facts.SecureBoot.Enabled, len(facts.SecureBoot.Authorities))
			}
			for _, a := range facts.BootApplications {
				fmt.Fprintf(w, "boot application: %s (event #%d)\n", a.Digest, a.Event)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&logPath, "log", "", "boot event log (binary_bios_measurements)")
	cmd.Flags().StringVar(&pcrsPath, "pcrs", "", `PCR values: the output of "omens pcr read --json", one bank or an array`)
	cmd.Flags().BoolVar(&allowSHA1, "allow-sha1", false, "accept a log with SHA-1 digests only")
	jsonFlag(cmd, &asJSON)
	return cmd
}

func describeBanks(banks []verify.PCRBank) string {
	var parts []string
	for _, b := range banks {
		var pcrs []int
		for p := range b.PCRs {
			pcrs = append(pcrs, p)
		}
		slices.Sort(pcrs)
		parts = append(parts, fmt.Sprintf("%s PCRs %s", bankLabel(b.Alg), strings.Trim(strings.Join(strings.Fields(fmt.Sprint(pcrs)), ","), "[]")))
	}
	return strings.Join(parts, "; ")
}

// readPCRFile reads the JSON of `omens pcr read --json`: one PCRValues or an array.
func readPCRFile(path string) ([]verify.PCRBank, error) {
	b, err := limits.ReadFile(path, limits.PCRFile)
	if err != nil {
		return nil, fmt.Errorf("PCR file: %w", err)
	}
	var list []PCRValues
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '[' {
		err = json.Unmarshal(t, &list)
	} else {
		var one PCRValues
		err = json.Unmarshal(t, &one)
		list = []PCRValues{one}
	}
	if err != nil {
		return nil, fmt.Errorf("PCR file %s: %w", path, err)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("PCR file %s holds no bank", path)
	}
	var out []verify.PCRBank
	for _, v := range list {
		bank, err := tpmrules.ParseBank(v.Bank)
		if err != nil {
			return nil, fmt.Errorf("PCR file %s: %v", path, err)
		}
		pb := verify.PCRBank{Alg: bank.Alg, PCRs: map[int][]byte{}}
		for k, hx := range v.PCRs {
			p, err := strconv.Atoi(k)
			if err != nil || p < 0 || p >= tpmrules.NumPCRs {
				return nil, fmt.Errorf("PCR file %s: PCR index %q is not from 0 to %d", path, k, tpmrules.NumPCRs-1)
			}
			d, err := hex.DecodeString(hx)
			if err != nil || len(d) != bank.Size {
				return nil, fmt.Errorf("PCR file %s: %s PCR %d is not %d bytes of hex", path, bank.Name, p, bank.Size)
			}
			pb.PCRs[p] = d
		}
		if len(pb.PCRs) == 0 {
			return nil, fmt.Errorf("PCR file %s: bank %s holds no PCR", path, bank.Name)
		}
		out = append(out, pb)
	}
	return out, nil
}
