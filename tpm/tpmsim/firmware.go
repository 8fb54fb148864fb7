//go:build cgo

package tpmsim

import (
	"bytes"
	"errors"
	"fmt"
	"omens.dev/omens/internal/limits"
	"os"
	"path/filepath"

	"github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/tpm"
)

// EventLogFile is the name, in the state directory, of the boot event log a host booted
// from --boot-log plays at every boot and serves to its agent, as Linux serves the
// firmware's log at /sys/kernel/security/tpm0/binary_bios_measurements.
const EventLogFile = "binary_bios_measurements"

// TCG PC Client Platform Firmware Profile 2.0, 10.4.2 and 10.4.5.3.
const (
	evNoAction = 0x00000003
	// startupLocalitySignature opens the data of the EV_NO_ACTION event in PCR 0 that
	// records the locality TPM2_Startup came from (TCG_EfiStartupLocalityEvent).
	startupLocalitySignature = "StartupLocality\x00"
)

// BootLogReport says what playing a boot log did.
type BootLogReport struct {
	// Events is how many events were extended (EV_NO_ACTION events are not).
	Events int `json:"events"`
	// Banks are the banks extended: those of the log that the simulator has.
	Banks []string `json:"banks"`
	// Skipped are the log's banks the simulator does not have (e.g. sm3_256).
	Skipped []string `json:"skipped,omitempty"`
	// StartupLocality is the locality of TPM2_Startup the log records (0 when it has no
	// StartupLocality event).
	StartupLocality int `json:"startup_locality"`
}

// installBootLog parses the TCG event log at src and copies it to dst, the state
// directory's boot log, from which the host boots from then on.
func installBootLog(src, dst string) error {
	raw, err := limits.ReadFile(src, limits.EventLog)
	if err != nil {
		return fmt.Errorf("tpmsim: boot log: %w", err)
	}
	if _, err := attest.ParseEventLog(raw); err != nil {
		return fmt.Errorf("tpmsim: boot log %s: %w", src, err)
	}
	return writeFileAtomic(dst, raw, 0o644)
}

func eventLogPath(stateDir string) string { return filepath.Join(stateDir, EventLogFile) }

// EventLogPath is where the host serves its boot event log (the agent's event_log_path).
// The file exists only for a host that boots from a log.
func (s *Sim) EventLogPath() string { return eventLogPath(s.opts.StateDir) }

// readBootLog reads the state directory's boot log; ok is false when there is none.
func (s *Sim) readBootLog() (raw []byte, ok bool, err error) {
	raw, err = os.ReadFile(s.EventLogPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("tpmsim: boot log: %w", err)
	}
	return raw, true, nil
}

// playBootLog extends every event of the TCG event log raw into the PCRs, as the firmware
// that wrote it did: event by event in log order, each by TPM2_PCR_Extend with the event's
// digests in the banks of the log that the simulator has. EV_NO_ACTION events extend
// nothing; a StartupLocality one sets PCR 0's reset value first. The TPM must have just
// started (PCRs at their reset values).
func playBootLog(t transport.TPM, raw []byte) (BootLogReport, error) {
	var rep BootLogReport
	el, err := attest.ParseEventLog(raw)
	if err != nil {
		return rep, fmt.Errorf("tpmsim: boot log: %w", err)
	}
	type bankEvents struct {
		bank   simBank
		events []attest.Event
	}
	var banks []bankEvents
	for _, alg := range el.Algs {
		b, ok := simBankOf(tpm2.TPMIAlgHash(alg))
		if !ok {
			rep.Skipped = append(rep.Skipped, alg.String())
			continue
		}
		banks = append(banks, bankEvents{b, el.Events(alg)})
		rep.Banks = append(rep.Banks, b.name)
	}
	if len(banks) == 0 {
		return rep, fmt.Errorf("tpmsim: boot log: none of its banks %v is a bank of the simulator", rep.Skipped)
	}
	pcr0Extended := false
	for i, ev := range banks[0].events {
		if ev.Type == evNoAction {
			loc, ok := startupLocality(ev)
			if !ok {
				continue
			}
			if pcr0Extended {
				return rep, fmt.Errorf("tpmsim: boot log event %d: StartupLocality after the first measurement into PCR 0", i+1)
			}
			if loc != 0 {
				if err := setStartupLocality(t, loc); err != nil {
					return rep, err
				}
			}
			rep.StartupLocality = int(loc)
			continue
		}
		// An event may carry digests for fewer banks than the log declares (Windows logs
		// some late events in SHA-256 alone): it is extended in the banks it has.
		digests := make([]tpm2.TPMTHA, 0, len(banks))
		for _, be := range banks {
			if d := be.events[i].Digest; len(d) == be.bank.size {
				digests = append(digests, tpm2.TPMTHA{HashAlg: be.bank.alg, Digest: d})
			}
		}
		if len(digests) == 0 {
			return rep, fmt.Errorf("tpmsim: boot log event %d (%s, PCR %d): no digest in the banks %v", i+1, ev.Type, ev.Index, rep.Banks)
		}
		if err := tpm.ExtendPCRDigests(t, ev.Index, digests); err != nil {
			return rep, fmt.Errorf("tpmsim: boot log event %d (%s): %w", i+1, ev.Type, err)
		}
		pcr0Extended = pcr0Extended || ev.Index == 0
		rep.Events++
	}
	return rep, nil
}

// startupLocality returns the locality an EV_NO_ACTION event in PCR 0 records, if it is a
// StartupLocality event (signature, then one byte).
func startupLocality(ev attest.Event) (byte, bool) {
	if ev.Index != 0 || len(ev.Data) != len(startupLocalitySignature)+1 || !bytes.HasPrefix(ev.Data, []byte(startupLocalitySignature)) {
		return 0, false
	}
	return ev.Data[len(ev.Data)-1], true
}
