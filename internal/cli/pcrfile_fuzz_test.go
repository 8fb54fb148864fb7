package cli

import (
	"os"
	"path/filepath"
	"testing"

	"omens.dev/omens/tpmrules"
)

// FuzzReadPCRFile: the PCR file `omens eventlog verify --pcrs` reads (an operator's file,
// or another program's) is refused or read into banks of whole digests, never a panic.
func FuzzReadPCRFile(f *testing.F) {
	f.Add([]byte(`{"bank":"sha256","pcrs":{"0":""}}`))
	f.Add([]byte(`[{"bank":"sha1","pcrs":{"7":"0000000000000000000000000000000000000000"}}]`))
	f.Add([]byte(`[[[[[[[[[[]]]]]]]]]]`))
	f.Add([]byte(`{"bank":"md5"}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "pcrs.json")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		banks, err := readPCRFile(p)
		if err != nil {
			return
		}
		if len(banks) == 0 {
			t.Fatal("no error and no bank")
		}
		for _, bank := range banks {
			want, ok := tpmrules.BankOf(bank.Alg)
			if !ok {
				t.Fatalf("bank of unknown algorithm %#x accepted", bank.Alg)
			}
			for i, d := range bank.PCRs {
				if i < 0 || i >= tpmrules.NumPCRs || len(d) != want.Size {
					t.Fatalf("PCR %d of %d bytes accepted in %s", i, len(d), want.Name)
				}
			}
		}
	})
}
