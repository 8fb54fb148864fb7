// Package prometheus holds omens' Prometheus alert rules (omens-alerts.yml, tested by
// promtool with omens-alerts_test.yml) for the binaries that install or run them: the
// lab loads LabRules.
package prometheus

import (
	_ "embed"
	"regexp"
	"strings"
	"time"
)

// Rules is omens-alerts.yml, the production alert rules.
//
//go:embed omens-alerts.yml
var Rules []byte

// The lab's copy of the rules: the same expressions, with the 15-minute windows and the
// for: durations shortened so that an alert fires and clears within a lab's scenario.
const (
	LabWindow = time.Minute
	LabFor    = 5 * time.Second
)

var forLine = regexp.MustCompile(`(?m)^(\s+for:) \S+$`)

// LabRules returns Rules with every [15m] window and "15 minutes" as LabWindow, and every
// for: as LabFor.
func LabRules() []byte {
	s := string(Rules)
	s = strings.ReplaceAll(s, "[15m]", "["+promDuration(LabWindow)+"]")
	s = strings.ReplaceAll(s, "15 minutes", LabWindow.String())
	s = forLine.ReplaceAllString(s, "${1} "+promDuration(LabFor))
	return []byte("# omens lab: omens-alerts.yml with windows of " + promDuration(LabWindow) + " and for: " + promDuration(LabFor) + "\n" + s)
}

// promDuration writes d as Prometheus does: 1m, 5s.
func promDuration(d time.Duration) string {
	if d%time.Minute == 0 {
		return strings.TrimSuffix(d.String(), "0s")
	}
	return d.String()
}
