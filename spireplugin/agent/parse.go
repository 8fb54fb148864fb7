package agent

import "omens.dev/omens/prover"

// ParseConfig reads plugin_data as Configure does and returns the prover configuration
// it gives (before prover.New fills in defaults: a key left out is zero) and what is
// wrong with it, one note per problem; `omens doctor` reads an agent's configuration
// through it, so that it judges the keys exactly as the plugin will.
func ParseConfig(hclText string) (*prover.Config, []string) { return buildConfig(hclText) }
