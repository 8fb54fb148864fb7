package limits_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"omens.dev/omens/internal/limits"
)

func write(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A million nested braces: the file that killed the SPIRE server's plugin.
func millionBraces() []byte {
	return append([]byte("x = "), bytes.Repeat([]byte("{"), 1_000_000)...)
}

func TestReadFileRefusesDeepNesting(t *testing.T) {
	for _, tc := range []struct {
		kind limits.Kind
		src  []byte
		want string
	}{
		{limits.PolicyFile, millionBraces(), ":1: nesting deeper than the 32-level limit for a PCR policy file"},
		{limits.Inventory, append([]byte("# inventory\n\nhost \"a\" "), bytes.Repeat([]byte("{ x "), 1_000_000)...), ":3: nesting deeper than the 32-level limit for an inventory"},
		{limits.PolicyState, append([]byte("{\n\"hosts\": "), bytes.Repeat([]byte("["), 1_000_000)...), ":2: nesting deeper than the 32-level limit for a PCR policy state file"},
		{limits.PluginConfig, bytes.Repeat([]byte("a = [\n"), 33), ":33: nesting deeper than the 32-level limit for a plugin configuration"},
		{limits.PluginConfig, append([]byte(" {\"a\":\n"), bytes.Repeat([]byte("{\"a\": "), 32)...), ":2: nesting deeper than the 32-level limit for a plugin configuration"},
	} {
		p := write(t, "f", tc.src)
		_, err := limits.ReadFile(p, tc.kind)
		if err == nil || err.Error() != "limits: "+p+tc.want {
			t.Errorf("%s: got %v, want limits: %s%s", tc.kind.What, err, p, tc.want)
		}
		if !errors.Is(err, limits.ErrTooDeep) {
			t.Errorf("%s: %v is not ErrTooDeep", tc.kind.What, err)
		}
	}
}

func TestReadFileAcceptsTheLimit(t *testing.T) {
	for _, tc := range []struct {
		kind limits.Kind
		src  string
	}{
		{limits.PolicyFile, "x = " + strings.Repeat("{", 32) + strings.Repeat("}", 32)},
		{limits.PolicyFile, "x = " + strings.Repeat("[{", 16) + strings.Repeat("}]", 16)},
		{limits.PolicyState, strings.Repeat("[", 32) + strings.Repeat("]", 32)},
		// Siblings do not add up: depth is nesting, not count.
		{limits.Inventory, strings.Repeat("a { b { } }\n", 1000)},
	} {
		p := write(t, "f", []byte(tc.src))
		if _, err := limits.ReadFile(p, tc.kind); err != nil {
			t.Errorf("%s %.30q: %v", tc.kind.What, tc.src, err)
		}
	}
}

func TestReadFileRefusesOversize(t *testing.T) {
	for _, k := range []limits.Kind{limits.PolicyFile, limits.PolicyState, limits.Inventory, limits.ServerConfig,
		limits.HashList, limits.CABundle, limits.CRL, limits.DevIDMeta, limits.DevIDCert, limits.KeyBlob,
		limits.StepCAConfig, limits.PasswordFile, limits.RABindings, limits.HelperConfig, limits.PIDFile,
		limits.AgentConfig, limits.LUKS2Meta, limits.InstalledFile, limits.EventLog, limits.PCRFile,
		limits.LabState, limits.SVIDPEM} {
		size := k.MaxBytes + 1
		p := write(t, "f", nil)
		if err := os.Truncate(p, size); err != nil { // sparse
			t.Fatal(err)
		}
		_, err := limits.ReadFile(p, k)
		want := fmt.Sprintf("limits: %s is %d bytes, over the %d-byte limit for %s", p, size, k.MaxBytes, k.What)
		if err == nil || err.Error() != want {
			t.Errorf("got %v, want %s", err, want)
		}
		if !errors.Is(err, limits.ErrTooLarge) {
			t.Errorf("%v is not ErrTooLarge", err)
		}
		// At the cap, the file is read.
		if err := os.Truncate(p, k.MaxBytes); err != nil {
			t.Fatal(err)
		}
		if b, err := limits.ReadFile(p, k); err != nil || int64(len(b)) != k.MaxBytes {
			t.Errorf("%s at the cap: %d bytes, %v", k.What, len(b), err)
		}
	}
}

func TestCheckRefusesOversize(t *testing.T) {
	src := strings.Repeat(" ", int(limits.PluginConfig.MaxBytes)+1)
	err := limits.Check("plugin_data", []byte(src), limits.PluginConfig)
	want := "limits: plugin_data is 1048577 bytes, over the 1048576-byte limit for a plugin configuration"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestReadFileRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	_, err := limits.ReadFile(dir, limits.PolicyFile)
	want := "limits: " + dir + " is not a regular file (a directory): a PCR policy file must be one"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	// Without a writer, a plain open of a FIFO would block forever.
	_, err = limits.ReadFile(fifo, limits.HashList)
	want = "limits: " + fifo + " is not a regular file (a named pipe): an EK hash list must be one"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	_, err = limits.ReadFile("/dev/zero", limits.CABundle)
	want = "limits: /dev/zero is not a regular file (a character device): a CA bundle file must be one"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestReadFileKeepsNotExist(t *testing.T) {
	_, err := limits.ReadFile(filepath.Join(t.TempDir(), "missing"), limits.PolicyState)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want fs.ErrNotExist", err)
	}
}

// Braces and brackets the parser does not see as such do not count.
func TestDepthHCLIgnoresStringsAndComments(t *testing.T) {
	deep := strings.Repeat("{[", 40)
	for _, tc := range []struct {
		name string
		src  string
		want int
	}{
		{"string", `a = "` + deep + `"`, 0},
		{"escaped quote", `a = "\"` + deep + `\""`, 0},
		{"interpolation", `a = "${foo("` + deep + `")}"`, 0},
		{"hash comment", "# " + deep + "\nb = {}", 1},
		{"slash comment", "// " + deep + "\nb = {}", 1},
		{"block comment", "/* " + deep + "\n" + deep + " */ b = {}", 1},
		{"heredoc", "a = <<EOF\n" + deep + "\nEOF\nb = [{}]", 2},
		{"indented heredoc", "a = <<-EOF\n" + deep + "\n    EOF\nb = [{}]", 2},
		{"heredoc anchor inside", "a = <<EOF\nEOFX " + deep + "\nEOF\n", 0},
		{"real nesting", `a { b = [ { c = "}" } ] }`, 3},
	} {
		if got, _ := limits.DepthHCL([]byte(tc.src), 32); got != tc.want {
			t.Errorf("%s: depth %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestDepthJSONIgnoresStrings(t *testing.T) {
	deep := strings.Repeat("{[", 40)
	for _, tc := range []struct {
		name string
		src  string
		want int
	}{
		{"string", `{"a": "` + deep + `"}`, 1},
		{"key", `{"` + deep + `": 1}`, 1},
		{"escaped quote", `{"a": "\"` + deep + `\\"}`, 1},
		{"escaped backslash", `["\\", [["\\\""]]]`, 3},
		{"real nesting", `{"a": [{"b": "}"}]}`, 3},
	} {
		if got, _ := limits.DepthJSON([]byte(tc.src), 32); got != tc.want {
			t.Errorf("%s: depth %d, want %d", tc.name, got, tc.want)
		}
		if got, _ := limits.DepthHCLJSON([]byte(tc.src), 32); got != tc.want {
			t.Errorf("%s: HCL JSON depth %d, want %d", tc.name, got, tc.want)
		}
	}
}

// The scanners stop at the first level past stop: a million braces cost no more than a
// few.
func TestDepthStopsPastTheLimit(t *testing.T) {
	src := bytes.Repeat([]byte("["), 1_000_000)
	for name, f := range map[string]func([]byte, int) (int, int){
		"HCL": limits.DepthHCL, "HCL JSON": limits.DepthHCLJSON, "JSON": limits.DepthJSON,
	} {
		if d, line := f(src, 32); d != 33 || line != 1 {
			t.Errorf("%s: depth %d line %d, want 33 at line 1", name, d, line)
		}
	}
}
