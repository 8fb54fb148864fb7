package tpmsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"

	"omens.dev/omens/internal/statefile"
)

func loadProfile(path string) (Profile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		p := DefaultProfile()
		return p, saveProfile(path, p)
	}
	if err != nil {
		return nil, fmt.Errorf("tpmsim: %w", err)
	}
	var raw map[string][]string
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("tpmsim: %s: %w", path, err)
	}
	p := Profile{}
	for k, v := range raw {
		i, err := strconv.Atoi(k)
		if err != nil || i < 0 || i > 23 {
			return nil, fmt.Errorf("tpmsim: %s: key %q is not a PCR index from 0 to 23", path, k)
		}
		p[i] = v
	}
	return p, nil
}

func saveProfile(path string, p Profile) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'), 0o644)
}

// writeFileAtomic replaces path atomically (statefile.WriteAtomic).
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := statefile.WriteAtomic(path, data, perm); err != nil {
		return fmt.Errorf("tpmsim: %w", err)
	}
	return nil
}
