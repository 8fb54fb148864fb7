package tpm_test

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"omens.dev/omens/internal/test/testtpm"
	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
)

// TestAllocatedPCRs: the banks AllocatedPCRs reads from swtpm are the ones tpm2_getcap
// pcrs lists, before and after tpm2_pcrallocate and a TPM reset.
func TestAllocatedPCRs(t *testing.T) {
	testtpm.RequireTool(t, "tpm2_getcap")
	testtpm.RequireTool(t, "tpm2_pcrallocate")
	s := testtpm.StartSwtpm(t)
	tools := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+s.TCTI())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// tpm2_getcap pcrs prints "  - sha256: [ 0, 1, ..., 23 ]" per bank.
	line := regexp.MustCompile(`(?m)^\s*- (\w+): \[([^\]]*)\]`)
	compare := func() {
		t.Helper()
		tp := openSwtpm(t, s)
		got, err := tpm.AllocatedPCRs(tp)
		if err != nil {
			t.Fatal(err)
		}
		compared := 0
		for _, m := range line.FindAllStringSubmatch(tools("tpm2_getcap", "pcrs"), -1) {
			bank, err := tpmrules.ParseBank(m[1])
			if err != nil {
				continue // sha512, which omens does not quote
			}
			compared++
			want := strings.Join(strings.Fields(strings.ReplaceAll(m[2], ",", " ")), ",")
			var have []string
			for _, p := range got[bank.Alg] {
				have = append(have, strconv.Itoa(p))
			}
			if strings.Join(have, ",") != want {
				t.Errorf("%s bank: AllocatedPCRs says [%s], tpm2_getcap [%s]", m[1], strings.Join(have, ","), want)
			}
		}
		if compared < 2 {
			t.Fatalf("tpm2_getcap pcrs listed %d of the banks omens knows", compared)
		}
	}
	compare()
	if all := tpm.NumPCRs; len(mustAllocated(t, openSwtpm(t, s))[tpmrules.Banks[1].Alg]) != all {
		t.Errorf("swtpm's sha256 bank does not have %d PCRs", all)
	}
	tools("tpm2_pcrallocate", "sha1:all+sha256:none")
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	compare()
	if n := len(mustAllocated(t, openSwtpm(t, s))[tpmrules.Banks[1].Alg]); n != 0 {
		t.Errorf("after tpm2_pcrallocate sha256:none the sha256 bank has %d PCRs", n)
	}
}

func mustAllocated(t *testing.T, tp transport.TPM) map[tpm2.TPMIAlgHash][]int {
	t.Helper()
	got, err := tpm.AllocatedPCRs(tp)
	if err != nil {
		t.Fatal(err)
	}
	return got
}
