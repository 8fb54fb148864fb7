package cli

import (
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"omens.dev/omens/tpm"
	"omens.dev/omens/tpmrules"
)

func newPCRCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pcr",
		Short: "Read and extend PCRs",
	}
	cmd.AddCommand(newPCRReadCmd(), newPCRExtendCmd(), newPCRAllowNextCmd(), newPCRPolicyCmd())
	return cmd
}

// PCRValues is the JSON form of `omens pcr read`.
type PCRValues struct {
	Bank string            `json:"bank"`
	PCRs map[string]string `json:"pcrs"`
}

func newPCRReadCmd() *cobra.Command {
	var path, bankName, sel string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "read [--bank sha256] [--pcrs 0,2,4,7]",
		Short: "Read PCR values from one bank",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bank, err := tpm.ParseBank(bankName)
			if err != nil {
				return err
			}
			pcrs, err := tpm.ParsePCRSelection(sel)
			if err != nil {
				return err
			}
			t, err := tpm.Open(path)
			if err != nil {
				return err
			}
			defer t.Close()
			vals, err := tpm.ReadPCRs(t, bank, pcrs)
			if err != nil {
				return err
			}
			if asJSON {
				out := PCRValues{Bank: bank.Name, PCRs: map[string]string{}}
				for _, p := range pcrs {
					out.PCRs[strconv.Itoa(p)] = hex.EncodeToString(vals[p])
				}
				return writeJSON(cmd.OutOrStdout(), out)
			}
			tb := newTable(cmd.OutOrStdout())
			tb.row("PCR", bank.Name)
			for _, p := range pcrs {
				tb.row(strconv.Itoa(p), hex.EncodeToString(vals[p]))
			}
			tb.flush()
			return nil
		},
	}
	tpmFlag(cmd, &path)
	cmd.Flags().StringVar(&bankName, "bank", tpmrules.DefaultPCRBank, "PCR bank: sha1, sha256 or sha384")
	cmd.Flags().StringVar(&sel, "pcrs", "0-23", "PCRs to read: a list and ranges (0,2,4,7 or 0-7) or all")
	jsonFlag(cmd, &asJSON)
	return cmd
}

func newPCRExtendCmd() *cobra.Command {
	var path, data string
	var pcr int
	cmd := &cobra.Command{
		Use:   "extend --pcr N --data TEXT",
		Short: "Measure data into a PCR of every bank (TPM2_PCR_Event), as firmware or a boot loader would",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if data == "" {
				return fmt.Errorf("--data TEXT is required: the event to measure")
			}
			t, err := tpm.Open(path)
			if err != nil {
				return err
			}
			defer t.Close()
			if err := tpm.ExtendPCR(t, pcr, []byte(data)); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "measured %q into PCR %d\n", data, pcr)
			return nil
		},
	}
	tpmFlag(cmd, &path)
	cmd.Flags().IntVar(&pcr, "pcr", -1, "PCR index (0-23)")
	cmd.Flags().StringVar(&data, "data", "", "event data to measure (1 to 1024 bytes)")
	return cmd
}
