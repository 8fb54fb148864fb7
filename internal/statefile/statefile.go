// Package statefile keeps small state files that several processes share (the SPIRE
// server plugin and the CLI, the RA and its operator): an exclusive lock beside the file,
// and atomic replacement that keeps the file's mode and owner.
package statefile

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteAtomic replaces path with data: a temporary file in the same directory, written and
// synced, given the old file's mode and owner (perm for a new file), renamed over the old
// one, then the directory synced. A reader sees the old or the new content, never a part.
func WriteAtomic(path string, data []byte, perm os.FileMode) error {
	return writeAtomic(path, data, perm, true)
}

// WriteAtomicPerm is WriteAtomic for a file whose mode is a rule, such as a private key's
// 0600: the new file always gets exactly perm and the caller as owner, whatever the old
// one had. The temporary file is created 0600 and only then given perm, so the data is
// never readable by others before perm allows it.
func WriteAtomicPerm(path string, data []byte, perm os.FileMode) error {
	return writeAtomic(path, data, perm, false)
}

func writeAtomic(path string, data []byte, perm os.FileMode, keep bool) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if old, statErr := os.Stat(path); keep && statErr == nil {
		if err := keepOwner(tmp, old); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	} else if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	syncDir(dir)
	return nil
}
