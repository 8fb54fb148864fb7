//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package statefile

import (
	"fmt"
	"os"
	"syscall"
)

// Lock takes an exclusive flock on path, creating the file if needed. The lock is a
// file of its own because the state file is replaced by rename, and a lock on a replaced
// file would guard nothing.
func Lock(path string) (unlock func(), err error) {
	// Read-only is enough for flock, so users who may not write the lock file can still
	// take it.
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("statefile: lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("statefile: lock %s: %w", path, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// keepOwner gives the new state file tmp the mode and owner of the file it replaces. Only
// root may give a file away; anyone else who is not the owner gets an error rather than
// a state file the owner can no longer read.
func keepOwner(tmp *os.File, old os.FileInfo) error {
	if err := tmp.Chmod(old.Mode().Perm()); err != nil {
		return err
	}
	st, ok := old.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	uid, gid := int(st.Uid), int(st.Gid)
	if uid == os.Geteuid() && gid == os.Getegid() {
		return nil
	}
	if err := tmp.Chown(uid, gid); err != nil {
		if uid != os.Geteuid() {
			return fmt.Errorf("it is owned by uid %d: run as that user or as root (%w)", uid, err)
		}
		// Same owner, another group that this user is not in: keep going, the owner
		// can still read it.
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
