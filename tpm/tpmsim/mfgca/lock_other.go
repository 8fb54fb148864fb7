//go:build !unix

package mfgca

// lockDir is a no-op where flock is not available: concurrent first Opens of one
// directory are then not serialized.
func lockDir(string) (unlock func(), err error) { return func() {}, nil }
