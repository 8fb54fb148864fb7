// Package cli holds the omens subcommands. Each command parses flags and calls library
// code; output is a readable table or, with --json, the same data as JSON.
package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"omens.dev/omens/internal/version"
)

// exitError carries an exit code for a command whose output is complete but whose result
// is a failure (for example an EK certificate that does not verify).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// Main runs omens with args and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	root := newRoot()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(stderr, "omens:", ee.msg)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "omens:", err)
	return 1
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "omens",
		Short: "Workload identity rooted in the TPM and the measured boot state",
		Long: `omens gives every machine a workload identity rooted in its TPM 2.0 chip and its
measured boot state: EK certificate checks, PCR reads, and a simulated TPM for machines
without one.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Get().Version,
	}
	root.SetVersionTemplate(version.Get().String())
	root.Flags().BoolP("version", "v", false, "print the version, commit and Go version of this binary")
	root.AddCommand(
		newTPMCmd(),
		newEKCmd(),
		newPCRCmd(),
		newDevIDCmd(),
		newRACmd(),
		newLabCmd(),
		newApplyCmd(),
		newMigrateCmd(),
		newEventLogCmd(),
		newSVIDCmd(),
		newDoctorCmd(),
		newConfigCmd(),
		newBenchCmd(),
	)
	return root
}

// tpmFlag adds the --tpm flag every TPM-facing command takes.
func tpmFlag(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVar(path, "tpm", "", "TPM device or unix socket (default: /dev/tpmrm0, then /dev/tpm0; \"simulator\" for an in-process simulator)")
}

// jsonFlag adds --json.
func jsonFlag(cmd *cobra.Command, on *bool) {
	cmd.Flags().BoolVar(on, "json", false, "print JSON instead of text")
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned rows.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer) *table { return &table{tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)} }

func (t *table) row(cells ...string) { fmt.Fprintln(t.tw, strings.Join(cells, "\t")) }

func (t *table) flush() { t.tw.Flush() }
