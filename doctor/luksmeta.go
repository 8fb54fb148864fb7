package doctor

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"omens.dev/omens/internal/limits"
)

// LUKS2 metadata, as `cryptsetup luksDump --dump-json-metadata` prints the JSON area of a
// LUKS2 header (LUKS2 On-Disk Format Specification, 3), and the Clevis tokens in it:
// a token of type "clevis" holds the JWE whose protected header names the pin and its
// configuration (clevis-luks-bind(1), clevis-encrypt-tpm2(1)); an "sss" pin nests the JWEs
// of its pins, in compact form.

// maxClevisNesting bounds how deep sss pins may nest, maxSSSPins how many pins one holds.
const (
	maxClevisNesting = 8
	maxSSSPins       = 64
)

// ClevisToken is one Clevis token of a LUKS2 header.
type ClevisToken struct {
	ID       string   // the token's number
	Keyslots []string // the keyslots it unlocks
	// Pins are the pins it needs, sss unfolded: "tpm2", "tang", ...
	Pins []string
	// TPM2 are its tpm2 pins.
	TPM2 []TPM2Pin
}

// TPM2Pin is the configuration of a Clevis tpm2 pin: the PCRs its key is sealed to.
type TPM2Pin struct {
	Bank string // pcr_bank; "" when the pin names none
	PCRs []int  // pcr_ids, ascending; empty when the key is sealed to no PCR
}

// ParseLUKS2Metadata returns the Clevis tokens of src, the JSON metadata of a LUKS2
// header, in token order. src over the size or nesting limit of limits.LUKS2Meta is
// refused before the JSON parser sees it; so is each JWE header inside.
func ParseLUKS2Metadata(src []byte) ([]ClevisToken, error) {
	if err := limits.Check("LUKS2 metadata", src, limits.LUKS2Meta); err != nil {
		return nil, fmt.Errorf("doctor: %w", err)
	}
	var meta struct {
		Tokens map[string]json.RawMessage `json:"tokens"`
	}
	if err := json.Unmarshal(src, &meta); err != nil {
		return nil, fmt.Errorf("doctor: LUKS2 metadata: %v", err)
	}
	ids := make([]string, 0, len(meta.Tokens))
	for id := range meta.Tokens {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		a, errA := strconv.Atoi(ids[i])
		b, errB := strconv.Atoi(ids[j])
		if errA == nil && errB == nil {
			return a < b
		}
		return ids[i] < ids[j]
	})
	var out []ClevisToken
	for _, id := range ids {
		var tok struct {
			Type     string   `json:"type"`
			Keyslots []string `json:"keyslots"`
			JWE      struct {
				Protected string `json:"protected"`
			} `json:"jwe"`
		}
		if err := json.Unmarshal(meta.Tokens[id], &tok); err != nil {
			return nil, fmt.Errorf("doctor: LUKS2 token %s: %v", id, err)
		}
		if tok.Type != "clevis" {
			continue
		}
		ct := ClevisToken{ID: id, Keyslots: tok.Keyslots}
		if err := ct.readPin(tok.JWE.Protected, 0); err != nil {
			return nil, fmt.Errorf("doctor: LUKS2 token %s (clevis): %v", id, err)
		}
		out = append(out, ct)
	}
	return out, nil
}

// readPin reads a JWE protected header (base64url JSON) and the pins it names.
func (ct *ClevisToken) readPin(protected string, depth int) error {
	if depth >= maxClevisNesting {
		return fmt.Errorf("sss pins nest deeper than %d levels", maxClevisNesting)
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(protected, "="))
	if err != nil {
		return fmt.Errorf("JWE protected header: %v", err)
	}
	if err := limits.Check("JWE protected header", raw, limits.LUKS2Meta); err != nil {
		return err
	}
	var hdr struct {
		Clevis struct {
			Pin  string `json:"pin"`
			TPM2 *struct {
				PCRBank string          `json:"pcr_bank"`
				PCRIDs  json.RawMessage `json:"pcr_ids"`
			} `json:"tpm2"`
			SSS *struct {
				JWE []string `json:"jwe"`
			} `json:"sss"`
		} `json:"clevis"`
	}
	if err := json.Unmarshal(raw, &hdr); err != nil {
		return fmt.Errorf("JWE protected header: %v", err)
	}
	c := hdr.Clevis
	switch c.Pin {
	case "":
		return fmt.Errorf("JWE protected header names no clevis pin")
	case "tpm2":
		pin := TPM2Pin{}
		if c.TPM2 != nil {
			pin.Bank = c.TPM2.PCRBank
			if pin.PCRs, err = parsePCRIDs(c.TPM2.PCRIDs); err != nil {
				return err
			}
		}
		ct.TPM2 = append(ct.TPM2, pin)
	case "sss":
		if c.SSS == nil {
			return fmt.Errorf("sss pin without its configuration")
		}
		if len(c.SSS.JWE) > maxSSSPins {
			return fmt.Errorf("sss pin of %d pins, over the limit of %d", len(c.SSS.JWE), maxSSSPins)
		}
		for _, jwe := range c.SSS.JWE {
			header, _, _ := strings.Cut(jwe, ".")
			if err := ct.readPin(header, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if !slices.Contains(ct.Pins, c.Pin) {
		ct.Pins = append(ct.Pins, c.Pin)
	}
	return nil
}

// parsePCRIDs reads pcr_ids: a string "0,7" (how clevis writes it) or a list of numbers.
func parsePCRIDs(raw json.RawMessage) ([]int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var ids []int
	var s string
	var one int
	if err := json.Unmarshal(raw, &one); err == nil {
		ids = []int{one}
	} else if err := json.Unmarshal(raw, &s); err == nil {
		for _, part := range strings.Split(s, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			n, err := strconv.Atoi(part)
			if err != nil {
				return nil, fmt.Errorf("tpm2 pin: pcr_ids %q: %q is not a PCR number", s, part)
			}
			ids = append(ids, n)
		}
	} else if err := json.Unmarshal(raw, &ids); err != nil {
		return nil, fmt.Errorf("tpm2 pin: pcr_ids is neither a string nor a list of numbers")
	}
	for _, n := range ids {
		if n < 0 || n > 23 {
			return nil, fmt.Errorf("tpm2 pin: PCR %d in pcr_ids is not from 0 to 23", n)
		}
	}
	sort.Ints(ids)
	return slices.Compact(ids), nil
}
