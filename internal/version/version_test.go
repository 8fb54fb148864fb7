package version

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestGetLinkTimeValuesWin(t *testing.T) {
	defer func(v, c string) { Version, Commit = v, c }(Version, Commit)
	Version, Commit = "1.2.3", "0123456789abcdef0123456789abcdef01234567"
	i := Get()
	if i.Version != "1.2.3" || i.Commit != Commit || i.GoVersion != runtime.Version() {
		t.Errorf("Get() = %+v", i)
	}
	want := "omens 1.2.3\ncommit  0123456789abcdef0123456789abcdef01234567\ngo      " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	if got := i.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestGetWithoutLinkTimeValues(t *testing.T) {
	defer func(v, c string) { Version, Commit = v, c }(Version, Commit)
	Version, Commit = "", ""
	i := Get()
	// A test binary records no VCS revision and the main module as "(devel)".
	if i.Version == "" || i.Commit == "" || !strings.HasPrefix(i.GoVersion, "go") {
		t.Errorf("Get() = %+v: every field must say something", i)
	}
}

func TestFromSettings(t *testing.T) {
	for _, c := range []struct {
		settings []debug.BuildSetting
		want     string
	}{
		{nil, ""},
		{[]debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "false"}}, "abc"},
		{[]debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}}, "abc-dirty"},
	} {
		if got := fromSettings(c.settings); got != c.want {
			t.Errorf("fromSettings(%v) = %q, want %q", c.settings, got, c.want)
		}
	}
}
