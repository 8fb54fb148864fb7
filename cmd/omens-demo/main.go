// Command omens-demo is the lab's demo workload: a stand-in for OpenBao or step-ca that
// gets its X.509-SVID from a SPIRE agent and talks mutual TLS. See `omens-demo --help`.
package main

import (
	"os"

	"omens.dev/omens/demo"
)

func main() { os.Exit(demo.Main(os.Args[1:], os.Stdout, os.Stderr)) }
