package tpm

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// CountingTPM wraps a TPM and counts the commands sent through it by command code, with
// the time spent waiting for the TPM. Benchmarks use it to show what an operation costs on
// a real chip, where a CreatePrimary takes seconds.
type CountingTPM struct {
	TPM transport.TPM

	mu    sync.Mutex
	count map[tpm2.TPMCC]int
	spent time.Duration
}

// NewCountingTPM wraps t.
func NewCountingTPM(t transport.TPM) *CountingTPM {
	return &CountingTPM{TPM: t, count: map[tpm2.TPMCC]int{}}
}

// Send implements transport.TPM.
func (c *CountingTPM) Send(cmd []byte) ([]byte, error) {
	start := time.Now()
	rsp, err := c.TPM.Send(cmd)
	d := time.Since(start)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(cmd) >= 10 {
		c.count[tpm2.TPMCC(binary.BigEndian.Uint32(cmd[6:10]))]++
	}
	c.spent += d
	return rsp, err
}

// Total returns the number of commands sent and the time spent in the TPM.
func (c *CountingTPM) Total() (int, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.count {
		n += v
	}
	return n, c.spent
}

// Count returns how many times command cc was sent.
func (c *CountingTPM) Count(cc tpm2.TPMCC) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count[cc]
}

// Reset clears the counters.
func (c *CountingTPM) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count = map[tpm2.TPMCC]int{}
	c.spent = 0
}

// String lists the counts by command name, most frequent first.
func (c *CountingTPM) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	type kv struct {
		cc tpm2.TPMCC
		n  int
	}
	var all []kv
	for cc, n := range c.count {
		all = append(all, kv{cc, n})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].n != all[j].n {
			return all[i].n > all[j].n
		}
		return all[i].cc < all[j].cc
	})
	var b strings.Builder
	for i, e := range all {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%d", CommandName(e.cc), e.n)
	}
	return b.String()
}

// CommandName returns the spec name of a command code (TPM 2.0 Part 2, 6.5.2).
func CommandName(cc tpm2.TPMCC) string {
	if n, ok := commandNames[cc]; ok {
		return n
	}
	return fmt.Sprintf("0x%X", uint32(cc))
}

var commandNames = map[tpm2.TPMCC]string{
	tpm2.TPMCCCreatePrimary:      "CreatePrimary",
	tpm2.TPMCCCreate:             "Create",
	tpm2.TPMCCLoad:               "Load",
	tpm2.TPMCCEvictControl:       "EvictControl",
	tpm2.TPMCCReadPublic:         "ReadPublic",
	tpm2.TPMCCFlushContext:       "FlushContext",
	tpm2.TPMCCQuote:              "Quote",
	tpm2.TPMCCActivateCredential: "ActivateCredential",
	tpm2.TPMCCCertify:            "Certify",
	tpm2.TPMCCPolicySecret:       "PolicySecret",
	tpm2.TPMCCStartAuthSession:   "StartAuthSession",
	tpm2.TPMCCGetCapability:      "GetCapability",
	tpm2.TPMCCPCRRead:            "PCR_Read",
	tpm2.TPMCCPCREvent:           "PCR_Event",
	tpm2.TPMCCPCRExtend:          "PCR_Extend",
	tpm2.TPMCCNVRead:             "NV_Read",
	tpm2.TPMCCNVReadPublic:       "NV_ReadPublic",
	tpm2.TPMCCNVWrite:            "NV_Write",
	tpm2.TPMCCNVDefineSpace:      "NV_DefineSpace",
	tpm2.TPMCCSign:               "Sign",
	tpm2.TPMCCGetRandom:          "GetRandom",
}
