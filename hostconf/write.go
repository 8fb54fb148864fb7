package hostconf

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"omens.dev/omens/internal/limits"
	"omens.dev/omens/internal/statefile"
)

// Change is what rendering a file changes under a root directory.
type Change struct {
	File
	// Target is where the file is (to be) written: the root joined with File.Path.
	Target string
	// State is "new" (no file there), "changed" or "unchanged".
	State string
	// Diff is the unified diff from the installed file to the rendered one; empty when
	// unchanged.
	Diff string
}

// The states of a Change.
const (
	StateNew       = "new"
	StateChanged   = "changed"
	StateUnchanged = "unchanged"
)

// Compare reads what is installed under root for each file (each capped by
// limits.InstalledFile) and returns what writing them would change.
func Compare(root string, files []File) ([]Change, error) {
	var out []Change
	for _, f := range files {
		c := Change{File: f, Target: filepath.Join(root, f.Path)}
		old, err := limits.ReadFile(c.Target, limits.InstalledFile)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			c.State, c.Diff = StateNew, unified("/dev/null", c.Target+" (rendered)", nil, f.Data)
		case err != nil:
			return nil, fmt.Errorf("hostconf: %w", err)
		case bytes.Equal(old, f.Data):
			c.State = StateUnchanged
		default:
			c.State, c.Diff = StateChanged, unified(c.Target, c.Target+" (rendered)", old, f.Data)
		}
		out = append(out, c)
	}
	return out, nil
}

// Write writes files under root (each at root joined with its Path; root "/" installs
// them), creating directories, each file replaced atomically and only when it changes.
// It returns what it changed.
func Write(root string, files []File) ([]Change, error) {
	changes, err := Compare(root, files)
	if err != nil {
		return nil, err
	}
	for _, c := range changes {
		if c.State == StateUnchanged {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(c.Target), 0o755); err != nil {
			return nil, fmt.Errorf("hostconf: %w", err)
		}
		if err := statefile.WriteAtomic(c.Target, c.Data, c.Mode); err != nil {
			return nil, fmt.Errorf("hostconf: write %s: %w", c.Target, err)
		}
	}
	return changes, nil
}

// unified is the unified diff (3 lines of context) from a to b, labelled from and to.
func unified(from, to string, a, b []byte) string {
	x, y := lines(a), lines(b)
	ops := diffLines(x, y)
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", from, to)
	const ctx = 3
	// Walk the edit script, grouping changes closer than 2*ctx lines into one hunk.
	for i := 0; i < len(ops); {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		start := max(i-ctx, 0)
		end := i
		for end < len(ops) {
			if ops[end].kind != ' ' {
				end++
				continue
			}
			run := end
			for run < len(ops) && ops[run].kind == ' ' {
				run++
			}
			if run == len(ops) || run-end > 2*ctx {
				end = min(end+ctx, len(ops))
				break
			}
			end = run
		}
		ax, ay := ops[start].ai, ops[start].bi
		var na, nb int
		var body strings.Builder
		for _, op := range ops[start:end] {
			switch op.kind {
			case ' ':
				na++
				nb++
				body.WriteString(" " + x[op.ai])
			case '-':
				na++
				body.WriteString("-" + x[op.ai])
			case '+':
				nb++
				body.WriteString("+" + y[op.bi])
			}
		}
		fmt.Fprintf(&out, "@@ -%s +%s @@\n%s", hunkRange(ax, na), hunkRange(ay, nb), body.String())
		i = end
	}
	return out.String()
}

func hunkRange(start, n int) string {
	if n == 0 {
		return fmt.Sprintf("%d,0", start)
	}
	if n == 1 {
		return fmt.Sprint(start + 1)
	}
	return fmt.Sprintf("%d,%d", start+1, n)
}

// lines splits b into lines that keep their "\n"; a last line without one gets the
// marker diff(1) writes.
func lines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	parts := strings.SplitAfter(string(b), "\n")
	if parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	} else {
		parts[len(parts)-1] += "\n\\ No newline at end of file\n"
	}
	return parts
}

type op struct {
	kind   byte // ' ', '-', '+'
	ai, bi int  // line indices in a and b (where the line would be, for an insertion or deletion)
}

// maxCells bounds the table of the longest common subsequence; past it, the files are
// shown as all of a removed and all of b added.
const maxCells = 1 << 24

// diffLines returns an edit script from x to y by longest common subsequence.
func diffLines(x, y []string) []op {
	n, m := len(x), len(y)
	var ops []op
	if n*m > maxCells {
		for i := range x {
			ops = append(ops, op{'-', i, 0})
		}
		for j := range y {
			ops = append(ops, op{'+', n, j})
		}
		return ops
	}
	// lcs[i][j] is the length of the LCS of x[i:] and y[j:].
	lcs := make([][]int32, n+1)
	for i := range lcs {
		lcs[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && x[i] == y[j]:
			ops = append(ops, op{' ', i, j})
			i++
			j++
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, op{'-', i, j})
			i++
		default:
			ops = append(ops, op{'+', i, j})
			j++
		}
	}
	return ops
}
