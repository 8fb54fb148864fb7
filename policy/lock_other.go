//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package policy

import (
	"errors"
	"os"
	"runtime"
)

// errNoLock is returned where this package has no file locking.
var errNoLock = errors.New("policy: the state file needs flock, which " + runtime.GOOS + " does not have")

func lockFile(string) (func(), error) { return nil, errNoLock }

func keepOwner(tmp *os.File, old os.FileInfo) error { return tmp.Chmod(old.Mode().Perm()) }

func syncDir(string) {}
