package lab

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteStatus prints the status as a table, a row per host. Long values are shortened
// (`omens lab status --json` has them whole): the agent ID and EK hash to their first
// characters, the EK certificate to "verified" or why not, PCRs to their first 8 hex
// digits, times to the minute or second in local time.
func WriteStatus(w io.Writer, hosts []HostStatus) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tATTESTATION\tAGENT ID\tTPM\tEK HASH\tEK CERT\tBOOT STATE (PCR 0,2,4,7)\tDEVID EXPIRES\tWORKLOADS (SVID UNTIL)")
	for _, h := range hosts {
		fmt.Fprintln(tw, strings.Join(statusRow(h), "\t"))
	}
	return tw.Flush()
}

func statusRow(h HostStatus) []string {
	att, id := h.Attestation, shorten(h.AgentID, 52)
	if att == "" {
		att, id = "-", "-"
	}
	tpmState, _, _ := strings.Cut(h.TPM, " ")
	cert := h.EKCert
	if strings.HasPrefix(cert, "verified") {
		cert = "verified"
	}
	if h.Error != "" {
		cert = "error: " + h.Error
	}
	var boot []string
	for _, p := range BootPCRs {
		if v := h.BootState[fmt.Sprint(p)]; len(v) >= 8 {
			boot = append(boot, fmt.Sprintf("%d:%s", p, v[:8]))
		}
	}
	devidExp := "-"
	if !h.DevIDExpiry.IsZero() {
		devidExp = h.DevIDExpiry.Local().Format("2006-01-02 15:04")
	}
	if h.DevIDRevoked {
		devidExp = "revoked"
	}
	var wl []string
	for _, w := range h.Workloads {
		switch {
		case w.Holding:
			wl = append(wl, fmt.Sprintf("%s (%s)", w.Name, w.SVIDExpiry.Local().Format(time.TimeOnly)))
		case w.SPIFFEID != "":
			wl = append(wl, w.Name+" (expired)")
		default:
			wl = append(wl, w.Name+" (no SVID)")
		}
	}
	return []string{h.Host, att, id, orDash(tpmState), orDash(shorten(h.EKHash, 16)), orDash(cert),
		orDash(strings.Join(boot, " ")), devidExp, orDash(strings.Join(wl, ", "))}
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
