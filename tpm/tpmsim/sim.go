//go:build cgo

package tpmsim

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/tpm"
	"omens.dev/omens/tpm/tpmsim/mfgca"
	"omens.dev/omens/tpmrules"
)

// What the simulated manufacturer writes into EK certificates (TCG EK Credential Profile
// 3.2.9): the reference simulator reports TPM_PT_MANUFACTURER "MSFT".
const (
	Manufacturer    = "id:4D534654"
	FirmwareVersion = "id:00010002"
)

// certifiesKey reports whether der is a certificate for pub.
func certifiesKey(der []byte, pub crypto.PublicKey) bool {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return false
	}
	k, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(pub)
}

// Options configures a simulated TPM.
type Options struct {
	// StateDir holds the seed, the manufacturer CA, the EK certificates and the boot profile.
	StateDir string
	// ECC adds an ECC P-256 EK and certificate beside the RSA-2048 one.
	ECC bool
	// Model is written into the EK certificate's TPM model attribute (default "omens-sim").
	Model string
	// BootLog is a TCG boot event log (binary_bios_measurements) to boot from instead of
	// the boot profile. It is copied into the state directory (EventLogFile), served
	// there to the agent, and played into the PCRs at this and every later boot, also by
	// later starts without BootLog.
	BootLog string
	// EKExpired provisions EK certificates that have already expired: valid from the
	// manufacturer CA intermediate's NotBefore to a minute ago, as on a TPM kept past its
	// certificate's life. It applies when the certificates are issued (a new host).
	EKExpired bool
}

// Sim is a running simulated TPM. Its methods are safe for concurrent use; commands are
// executed one at a time, as by a real TPM.
type Sim struct {
	opts Options
	ca   *mfgca.CA

	mu   sync.Mutex
	sim  *simulator.Simulator
	t    transport.TPM
	boot Profile
	// bootLog is what the last boot played from the state directory's boot log, if the
	// host boots from one.
	bootLog *BootLogReport
	// Boots counts TPM2_Startup(CLEAR) since the process started.
	boots int
	// savedNV is the NV image last written to the state directory.
	savedNV []byte
}

func (s *Sim) nvPath() string { return filepath.Join(s.opts.StateDir, "nv") }

// Profile is what firmware measures at boot: PCR index to the event data measured into
// it, in order.
type Profile map[int][]string

// DefaultProfile is the boot a simulated host plays unless its boot.json says otherwise:
// firmware in PCR 0, option ROMs in 2, the boot loader in 4, Secure Boot state in 7, the
// PCRs the Tower's plan binds to.
func DefaultProfile() Profile {
	return Profile{
		0: {"omens-sim firmware 1.0"},
		2: {"omens-sim option ROMs"},
		4: {"omens-sim boot loader"},
		7: {"omens-sim secure boot enabled"},
	}
}

// Start creates (the first time) or loads the host in opts.StateDir and powers its TPM on.
// Only one Sim may run per process: the reference simulator is a process-wide singleton.
func Start(opts Options) (*Sim, error) {
	if opts.StateDir == "" {
		return nil, errors.New("tpmsim: a state directory is required (--state DIR)")
	}
	if opts.Model == "" {
		opts.Model = "omens-sim"
	}
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("tpmsim: %w", err)
	}
	seed, err := loadSeed(filepath.Join(opts.StateDir, "seed"))
	if err != nil {
		return nil, err
	}
	ca, err := mfgca.Open(opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("tpmsim: manufacturer CA: %w", err)
	}
	boot, err := loadProfile(filepath.Join(opts.StateDir, "boot.json"))
	if err != nil {
		return nil, err
	}
	if opts.BootLog != "" {
		if err := installBootLog(opts.BootLog, eventLogPath(opts.StateDir)); err != nil {
			return nil, err
		}
	}
	sim, err := simulator.GetWithFixedSeedInsecure(seed)
	if err != nil {
		return nil, fmt.Errorf("tpmsim: start reference simulator: %w", err)
	}
	s := &Sim{opts: opts, ca: ca, sim: sim, t: transport.FromReadWriter(sim), boot: boot}
	if err := s.powerOn(); err != nil {
		sim.Close()
		return nil, err
	}
	return s, nil
}

// powerOn brings the TPM up from its saved NV image, or provisions it the first time,
// then plays the boot and saves the NV image.
func (s *Sim) powerOn() error {
	img, saved, err := loadNVImage(s.nvPath())
	if err != nil {
		return err
	}
	if saved {
		powerOnWithNV(img)
		if _, err := (tpm2.Startup{StartupType: tpm2.TPMSUClear}).Execute(s.t); err != nil {
			return fmt.Errorf("tpmsim: TPM2_Startup from %s: %w", s.nvPath(), err)
		}
	} else if err := s.provision(); err != nil {
		return err
	}
	if err := s.measureBoot(); err != nil {
		return err
	}
	return s.saveNV()
}

// provision makes the fixed seeds durable and writes the EK certificates.
//
// GetWithFixedSeedInsecure sets the primary seeds in RAM only; TPM2_Startup after a reset
// would reload the random ones from NV and change the EK. TPM2_Clear writes the whole
// persistent state to NV (TPM 2.0 Part 3, 24.6), which fixes the endorsement seed for the
// life of the process; it renews the storage seed, which is fine on a new TPM.
func (s *Sim) provision() error {
	if _, err := (tpm2.Clear{AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHPlatform, Auth: tpm2.PasswordAuth(nil)}}).Execute(s.t); err != nil {
		return fmt.Errorf("tpmsim: TPM2_Clear: %w", err)
	}
	kinds := []tpmrules.EKKind{tpmrules.EKRSA2048}
	if s.opts.ECC {
		kinds = append(kinds, tpmrules.EKECCP256)
	}
	for _, kind := range kinds {
		if err := s.provisionEK(kind); err != nil {
			return err
		}
	}
	return nil
}

func (s *Sim) provisionEK(kind tpmrules.EKKind) error {
	ek, err := tpm.LoadEK(s.t, kind)
	if err != nil {
		return fmt.Errorf("tpmsim: %w", err)
	}
	defer ek.Close(s.t)
	pub, err := ek.PublicKey()
	if err != nil {
		return fmt.Errorf("tpmsim: EK %s: %w", kind.Name, err)
	}
	certPath := filepath.Join(s.opts.StateDir, "ek-"+strings.ToLower(kind.Name)+".der")
	cert, err := os.ReadFile(certPath)
	if err != nil || !certifiesKey(cert, pub) {
		now := time.Now()
		notBefore, notAfter := now.Add(-time.Hour), now.AddDate(20, 0, 0)
		if s.opts.EKExpired {
			notBefore, notAfter = s.ca.Intermediate().NotBefore, now.Add(-time.Minute)
		}
		cert, err = s.ca.IssueEK(pub, mfgca.EKTemplate{
			Manufacturer: Manufacturer,
			Model:        s.opts.Model,
			Version:      FirmwareVersion,
			NotBefore:    notBefore,
			NotAfter:     notAfter,
		})
		if err != nil {
			return fmt.Errorf("tpmsim: issue EK %s certificate: %w", kind.Name, err)
		}
		if err := writeFileAtomic(certPath, cert, 0o644); err != nil {
			return err
		}
	}
	if err := WriteEKCert(s.t, kind, cert); err != nil {
		return err
	}
	// Persist the EK at its TCG handle, as platforms commonly ship it.
	if kind.PersistentHandle != 0 && !ek.Persistent {
		_, err := tpm2.EvictControl{
			Auth:             tpm2.TPMRHOwner,
			ObjectHandle:     ek.NamedHandle(),
			PersistentHandle: kind.PersistentHandle,
		}.Execute(s.t)
		if err != nil {
			return fmt.Errorf("tpmsim: persist EK %s at 0x%08X: %w", kind.Name, uint32(kind.PersistentHandle), err)
		}
	}
	return nil
}

// WriteEKCert writes cert into kind's EK certificate index (TCG EK Credential Profile
// 2.2.1.5) under the platform hierarchy, as the manufacturer does at the factory,
// replacing the certificate there. t is a simulated TPM (its platform auth is empty),
// such as one served on a socket by `omens tpm simulate`.
func WriteEKCert(t transport.TPM, kind tpmrules.EKKind, cert []byte) error {
	platform := tpm2.AuthHandle{Handle: tpm2.TPMRHPlatform, Auth: tpm2.PasswordAuth(nil)}
	if rp, err := (tpm2.NVReadPublic{NVIndex: kind.CertIndex}).Execute(t); err == nil {
		_, err := tpm2.NVUndefineSpace{AuthHandle: platform, NVIndex: tpm2.NamedHandle{Handle: kind.CertIndex, Name: rp.NVName}}.Execute(t)
		if err != nil {
			return fmt.Errorf("tpmsim: NV_UndefineSpace 0x%08X: %w", uint32(kind.CertIndex), err)
		}
	}
	nvPub := tpm2.TPMSNVPublic{
		NVIndex: kind.CertIndex,
		NameAlg: tpm2.TPMAlgSHA256,
		// The attributes TCG EK Credential Profile 2.2.1.5 asks of EK certificate indices.
		Attributes: tpm2.TPMANV{
			PPWrite: true, WriteDefine: true, PPRead: true, OwnerRead: true, AuthRead: true,
			NoDA: true, Written: false, PlatformCreate: true, NT: tpm2.TPMNTOrdinary,
		},
		DataSize: uint16(len(cert)),
	}
	if _, err := (tpm2.NVDefineSpace{AuthHandle: platform, PublicInfo: tpm2.New2B(nvPub)}).Execute(t); err != nil {
		return fmt.Errorf("tpmsim: NV_DefineSpace 0x%08X: %w", uint32(kind.CertIndex), err)
	}
	rp, err := tpm2.NVReadPublic{NVIndex: kind.CertIndex}.Execute(t)
	if err != nil {
		return fmt.Errorf("tpmsim: NV_ReadPublic 0x%08X: %w", uint32(kind.CertIndex), err)
	}
	for off := 0; off < len(cert); off += 512 {
		end := min(off+512, len(cert))
		_, err := tpm2.NVWrite{
			AuthHandle: platform,
			NVIndex:    tpm2.NamedHandle{Handle: kind.CertIndex, Name: rp.NVName},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: cert[off:end]},
			Offset:     uint16(off),
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("tpmsim: NV_Write 0x%08X: %w", uint32(kind.CertIndex), err)
		}
	}
	return nil
}

// measureBoot plays the boot into the PCRs: the state directory's boot log if there is
// one, else the boot profile in PCR order.
func (s *Sim) measureBoot() error {
	s.boots++
	if raw, ok, err := s.readBootLog(); err != nil {
		return err
	} else if ok {
		rep, err := playBootLog(s.t, raw)
		if err != nil {
			return err
		}
		s.bootLog = &rep
		return nil
	}
	for _, pcr := range s.boot.pcrs() {
		for _, ev := range s.boot[pcr] {
			if err := tpm.ExtendPCR(s.t, pcr, []byte(ev)); err != nil {
				return fmt.Errorf("tpmsim: measure boot: %w", err)
			}
		}
	}
	return nil
}

func (p Profile) pcrs() []int {
	out := make([]int, 0, len(p))
	for k := range p {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

// Send runs one TPM command. It implements transport.TPM.
func (s *Sim) Send(cmd []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sim == nil {
		return nil, errors.New("tpmsim: TPM is powered off")
	}
	rsp, err := s.t.Send(cmd)
	if err != nil {
		return nil, err
	}
	if err := s.saveNV(); err != nil {
		return nil, err
	}
	return rsp, nil
}

// Reboot simulates a platform reset: TPM2_Shutdown, power cycle, TPM2_Startup(CLEAR), so
// PCRs return to their reset values; then firmware measures the boot again (the boot log, or
// the boot profile).
// Entries in set replace the profile's entries for their PCRs first (a BIOS update) and are
// saved in the state directory.
func (s *Sim) Reboot(set Profile) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(set) > 0 {
		if s.bootLog != nil {
			return fmt.Errorf("tpmsim: this host boots from its event log %s; a boot profile change (set) does not apply to it", s.EventLogPath())
		}
		for pcr := range set {
			if pcr < 0 || pcr >= tpm.NumPCRs {
				return fmt.Errorf("tpmsim: PCR %d is not from 0 to %d", pcr, tpm.NumPCRs-1)
			}
		}
		for pcr, evs := range set {
			s.boot[pcr] = evs
		}
		if err := saveProfile(filepath.Join(s.opts.StateDir, "boot.json"), s.boot); err != nil {
			return err
		}
	}
	return s.reset()
}

// RebootFromLog reboots the host (Reboot) into the boot the TCG event log at path records:
// the log replaces the state directory's boot log, so this and later boots play it (a
// new kernel, new firmware, Secure Boot turned off). A log that does not parse changes
// nothing.
func (s *Sim) RebootFromLog(path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := installBootLog(path, s.EventLogPath()); err != nil {
		return err
	}
	return s.reset()
}

// reset power-cycles the TPM and measures the boot. The caller holds s.mu.
func (s *Sim) reset() error {
	if err := s.sim.Reset(); err != nil {
		return fmt.Errorf("tpmsim: reset: %w", err)
	}
	if err := s.measureBoot(); err != nil {
		return err
	}
	return s.saveNV()
}

// Status describes the simulated host.
type Status struct {
	StateDir    string  `json:"state_dir"`
	Boots       int     `json:"boots"`
	BootProfile Profile `json:"boot_profile,omitempty"`
	// EventLog is the boot event log the host booted from, and BootLog what playing it
	// did; both are empty for a host that boots its boot profile.
	EventLog     string         `json:"event_log,omitempty"`
	BootLog      *BootLogReport `json:"boot_log,omitempty"`
	Manufacturer string         `json:"manufacturer_ca"`
}

// Status returns the host's state.
func (s *Sim) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{StateDir: s.opts.StateDir, Boots: s.boots, Manufacturer: s.ca.BundlePath()}
	if s.bootLog != nil {
		rep := *s.bootLog
		st.EventLog, st.BootLog = s.EventLogPath(), &rep
	} else {
		st.BootProfile = s.boot
	}
	return st
}

// BundlePath is the PEM file with the manufacturer's root and intermediate CA, the
// ca_path a verifier trusts for this host.
func (s *Sim) BundlePath() string { return s.ca.BundlePath() }

// Close powers the TPM off. The state directory stays.
func (s *Sim) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sim == nil {
		return nil
	}
	err := s.sim.Close()
	s.sim = nil
	return err
}

func loadSeed(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		var r [8]byte
		if _, err := rand.Read(r[:]); err != nil {
			return 0, err
		}
		if err := writeFileAtomic(path, []byte(hex.EncodeToString(r[:])+"\n"), 0o600); err != nil {
			return 0, err
		}
		return int64(binary.BigEndian.Uint64(r[:])), nil
	}
	if err != nil {
		return 0, fmt.Errorf("tpmsim: %w", err)
	}
	r, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(r) != 8 {
		return 0, fmt.Errorf("tpmsim: %s: want 16 hex digits, found %q", path, strings.TrimSpace(string(b)))
	}
	return int64(binary.BigEndian.Uint64(r)), nil
}

// ParseProfileEntry parses "PCR=EVENT" (for example "0=firmware 2.0").
func ParseProfileEntry(s string) (int, string, error) {
	k, v, ok := strings.Cut(s, "=")
	pcr, err := strconv.Atoi(strings.TrimSpace(k))
	if !ok || err != nil || pcr < 0 || pcr >= tpm.NumPCRs || v == "" {
		return 0, "", fmt.Errorf("tpmsim: %q: want PCR=EVENT with PCR from 0 to %d, e.g. 0=firmware-2.0", s, tpm.NumPCRs-1)
	}
	return pcr, v, nil
}
