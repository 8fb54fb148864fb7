package bench

import (
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"
)

func runtimeCPUs() int { return runtime.GOMAXPROCS(0) }

var progressMu sync.Mutex

func progressf(w io.Writer, format string, args ...any) {
	if w == nil {
		return
	}
	progressMu.Lock()
	defer progressMu.Unlock()
	fmt.Fprintf(w, format+"\n", args...)
}

// startProgress writes line() to w every second until the returned stop is called, which
// writes it a last time if any was written.
func startProgress(w io.Writer, line func() string) (stop func()) {
	if w == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	wrote := false
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				if wrote {
					progressf(w, "%s", line())
				}
				return
			case <-t.C:
				wrote = true
				progressf(w, "%s", line())
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// WriteTable writes the report as a table: one row per phase.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "%d agents, concurrency %d", r.Agents, r.Concurrency)
	if r.EKCA != "" {
		fmt.Fprintf(w, ", manufacturer CA %s", r.EKCA)
	}
	if r.Restarts > 0 {
		fmt.Fprintf(w, ", %d server restart", r.Restarts)
	}
	if r.KilledAt > 0 {
		fmt.Fprintf(w, ", 2 servers behind haproxy, one killed after %d", r.KilledAt)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tattested\trefused\tlost\tseconds\trate/s\tp50 ms\tp95 ms\tp99 ms\tserver CPU s\tplugin CPU s\tplugin/server\t")
	row := func(name string, p Phase) {
		share := "-"
		if p.ServerCPU > 0 {
			share = strconv.FormatFloat(100*p.PluginCPU/p.ServerCPU, 'f', 0, 64) + "%"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.2f\t%.2f\t%s\t\n",
			name, p.Attested, p.Refused, p.Lost, p.Seconds, p.RatePerS, p.P50ms, p.P95ms, p.P99ms, p.ServerCPU, p.PluginCPU, share)
	}
	row("attest", r.Phase)
	if r.Reattest != nil {
		row("reattest", *r.Reattest)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "peak RSS: spire-server %.1f MB, plugin %.1f MB\n", r.ServerRSSMB, r.PluginRSSMB)
	if r.Reattest != nil && r.Reattest.MinPerAgent != nil {
		fmt.Fprintf(w, "re-attestation: every agent re-attested at least %d times\n", *r.Reattest.MinPerAgent)
	}
	if r.ExtraAttestations != nil {
		fmt.Fprintf(w, "the kill: %d extra attestations (retries of the attempts it cut); %d of %d agents hold an SVID the surviving server still verifies\n",
			*r.ExtraAttestations, deref(r.SVIDsValidAfterKill), r.Agents)
	}
	if r.FirstRefusal != "" {
		fmt.Fprintf(w, "first refusal: %s\n", r.FirstRefusal)
	}
	if r.Reattest != nil && r.Reattest.FirstRefusal != "" {
		fmt.Fprintf(w, "first refusal while re-attesting: %s\n", r.Reattest.FirstRefusal)
	}
	return nil
}

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}
