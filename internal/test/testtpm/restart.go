package testtpm

import "fmt"

// Restart stops swtpm and starts it again on the same state and sockets: a power cycle,
// after which the TPM runs TPM2_Startup(CLEAR) and what waits for a TPM reset takes
// effect (a PCR bank allocation by TPM2_PCR_Allocate, as tpm2_pcrallocate makes).
func (s *Swtpm) Restart() error {
	if err := s.stop(); err != nil {
		return fmt.Errorf("testtpm: restart: %w", err)
	}
	s.proc = nil
	if err := s.start(); err != nil {
		return fmt.Errorf("testtpm: restart: %w", err)
	}
	return nil
}
