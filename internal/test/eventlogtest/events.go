package eventlogtest

import (
	"fmt"

	"omens.dev/omens/verify"
)

// ApplicationEvents returns the numbers of the boot applications of a log (its PCR 4
// events of type EV_EFI_BOOT_SERVICES_APPLICATION), as `omens eventlog show` numbers
// events (verify.EventLogEvents, from 1): what a refusal by the boot_loaders or kernels
// rule names.
func ApplicationEvents(log []byte) ([]int, error) {
	events, err := verify.EventLogEvents(log)
	if err != nil {
		return nil, err
	}
	var out []int
	for i, e := range events {
		if e.PCR == 4 && e.Type == "EV_EFI_BOOT_SERVICES_APPLICATION" {
			out = append(out, i+1)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("eventlogtest: the log has no boot application")
	}
	return out, nil
}
