// Package lab runs the Tower of Omens on one machine, under one state directory: for each
// host (spire, auth, ca) a simulated TPM (an `omens tpm simulate` process with its own
// manufacturer CA) and a SPIRE agent, and step-ca, the RA, the SPIRE server and the demo
// workloads.
//
// The files, by role:
//
//   - lab.go: the Lab, Up, Down and Status; the simulated TPMs.
//   - boot.go: how the hosts boot: a synthetic Secure Boot event log each (bootlog), which
//     the simulated TPM plays and serves to the agent, and the policy's boot rules over it.
//   - tower.go: step-ca (internal/stepcaproc), the RA, the SPIRE server and agents; the
//     lab's Tower as an inventory (towerInventory: its paths, its hosts' phases), from
//     which package hostconf renders the SPIRE configuration as for a real host.
//   - demo.go: the demo workloads and their users.
//   - migrate.go: the plan's migration from join tokens to the TPMs.
//   - scenario.go and scenario_*.go: the failures `omens lab scenario` plays, one file
//     each, listed in Scenarios. scenario_network_partition.go also keeps the network
//     namespace an agent runs in during that scenario (upAgent starts the agent in it,
//     Down removes it).
//   - proc.go: the lab's processes.
//
// The lab's processes are detached and tracked by internal/proc: their pids are recorded
// in DIR/run/*.pid and they log to DIR/logs/*.log, so `up` on a directory whose processes
// run resumes them, and `down` stops every one of them and removes their sockets.
package lab
