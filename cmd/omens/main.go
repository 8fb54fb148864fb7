// Command omens gives a machine a workload identity rooted in its TPM. See `omens --help`.
package main

import (
	"os"

	"omens.dev/omens/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
