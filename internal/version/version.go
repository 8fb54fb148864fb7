// Package version is what a binary says of its own build: the release version, the commit
// and the Go toolchain. `make build` and `make dist` set Version and Commit with
// -ldflags -X (see the Makefile); a binary built otherwise (go build, go install) reports
// what the Go toolchain stamped into it (runtime/debug.ReadBuildInfo).
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set at link time:
//
//	-X omens.dev/omens/internal/version.Version=0.1.0
//	-X omens.dev/omens/internal/version.Commit=<40 hex digits>
var (
	Version string
	Commit  string
)

// Info is one binary's build.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// Get returns the build of the running binary: the link-time values, else the module
// version and VCS revision the toolchain recorded ("devel" and "unknown" when it recorded
// none, as with -buildvcs=false outside a module download).
func Get() Info {
	info := Info{Version: Version, Commit: Commit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		info.GoVersion = bi.GoVersion
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		if info.Commit == "" {
			info.Commit = fromSettings(bi.Settings)
		}
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}

// fromSettings is the VCS revision of the build settings, with "-dirty" when the tree had
// uncommitted changes.
func fromSettings(settings []debug.BuildSetting) string {
	var rev, modified string
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev != "" && modified == "true" {
		rev += "-dirty"
	}
	return rev
}

// String is the text of `--version`.
func (i Info) String() string {
	return fmt.Sprintf("omens %s\ncommit  %s\ngo      %s %s\n", i.Version, i.Commit, i.GoVersion, i.Platform)
}
