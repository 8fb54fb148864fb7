package server

import (
	"strings"
	"testing"
)

func TestParseHashList(t *testing.T) {
	a, b := strings.Repeat("ab", 32), strings.Repeat("0", 64)
	got, err := parseHashList("allow.txt", []byte("# banned\n"+strings.ToUpper(a)+"  # upper case\r\n\n\t"+b))
	if err != nil || len(got) != 2 || !got[a] || !got[b] {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, tc := range []struct{ name, src, want string }{
		{"short", "# x\nabc\n", `allow.txt line 2: "abc" is not an EK hash (64 hex digits)`},
		{"not hex", strings.Repeat("g", 64), `allow.txt line 1: "` + strings.Repeat("g", 64) + `" is not an EK hash (64 hex digits)`},
		// A long line is quoted in part: the log gets the line number, not the file.
		{"long line", "\n\n" + strings.Repeat("a", 1<<20), `allow.txt line 3: "` + strings.Repeat("a", 80) + `..." is not an EK hash (64 hex digits)`},
	} {
		if _, err := parseHashList("allow.txt", []byte(tc.src)); err == nil || err.Error() != tc.want {
			t.Errorf("%s:\n got: %v\nwant: %s", tc.name, err, tc.want)
		}
	}
}

// FuzzParseHashList: any bytes give a list or an error, never a crash; every hash kept
// is 64 lower-case hex digits and appears in the input.
func FuzzParseHashList(f *testing.F) {
	f.Add([]byte("# banned\n" + strings.Repeat("ab", 32) + " # decommissioned\n"))
	f.Add([]byte(strings.Repeat("AB", 32) + "\r\n\n"))
	f.Add([]byte("abc\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		got, err := parseHashList("f", src)
		if err != nil {
			if got != nil {
				t.Fatal("a list with an error")
			}
			return
		}
		lower := strings.ToLower(string(src))
		for h := range got {
			if len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" || !strings.Contains(lower, h) {
				t.Fatalf("kept %q", h)
			}
		}
	})
}

// FuzzHashDirEntry: any name of a hash_path directory gives a hash, a skip or an error,
// never a crash; a hash kept is the name in lower case, 64 hex digits; an error quotes at
// most 80 bytes of the name.
func FuzzHashDirEntry(f *testing.F) {
	f.Add(strings.Repeat("AB", 32))
	f.Add(".swp")
	f.Add(strings.Repeat("z", 200))
	f.Fuzz(func(t *testing.T, name string) {
		h, err := hashDirEntry("hashes", name)
		switch {
		case err != nil:
			if h != "" || len(err.Error()) > len("hashes: entry  is not named by an EK hash (64 hex digits)")+4*83 {
				t.Fatalf("error %q with %q", err, h)
			}
		case h == "":
			if !strings.HasPrefix(name, ".") {
				t.Fatalf("skipped %q", name)
			}
		default:
			if len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" || h != strings.ToLower(name) {
				t.Fatalf("kept %q for %q", h, name)
			}
		}
	})
}
