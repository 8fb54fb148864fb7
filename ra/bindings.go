package ra

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"omens.dev/omens/internal/statefile"
)

// The enrollment policy: which host names may be bound to which TPM (EK hash). A binding
// is made by an operator, ahead of time (`omens ra approve HOST --ek HASH`) or by
// approving a request that waits in the pending queue (`omens ra pending`, then
// `omens ra approve HOST`). A host is bound to one EK and an EK to one host.

// Binding is an approved host.
type Binding struct {
	Host     string    `json:"host"`
	EKHash   string    `json:"ek_hash"`
	Approved time.Time `json:"approved"`
	// The DevID certificate last issued to the host, for renewal and revocation.
	Serial   string    `json:"serial,omitempty"`
	NotAfter time.Time `json:"not_after,omitempty"`
	Revoked  bool      `json:"revoked,omitempty"`
}

// Pending is an enrollment request that no binding allowed yet.
type Pending struct {
	Host      string    `json:"host"`
	EKHash    string    `json:"ek_hash"`
	EKIssuer  string    `json:"ek_issuer,omitempty"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Requests  int       `json:"requests"`
}

// Bindings is the RA's state file.
type Bindings struct {
	Version int                 `json:"version"`
	Hosts   map[string]*Binding `json:"hosts"`
	Pending map[string]*Pending `json:"pending"`
}

// Store reads and changes the bindings file under its lock, so the serving RA and the
// operator's CLI can both write it.
type Store struct {
	path string
}

// OpenStore returns the bindings store in dir (created if needed).
func OpenStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ra: state directory: %w", err)
	}
	return &Store{path: filepath.Join(dir, "bindings.json")}, nil
}

// Path is the bindings file.
func (s *Store) Path() string { return s.path }

// Update runs f on the current bindings under the lock and saves them when f returns nil.
func (s *Store) Update(f func(*Bindings) error) error {
	unlock, err := statefile.Lock(s.path + ".lock")
	if err != nil {
		return fmt.Errorf("ra: %w", err)
	}
	defer unlock()
	b, err := s.read()
	if err != nil {
		return err
	}
	if err := f(b); err != nil {
		return err
	}
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	if err := statefile.WriteAtomic(s.path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("ra: writing %s: %w", s.path, err)
	}
	return nil
}

// Read returns the current bindings.
func (s *Store) Read() (*Bindings, error) {
	unlock, err := statefile.Lock(s.path + ".lock")
	if err != nil {
		return nil, fmt.Errorf("ra: %w", err)
	}
	defer unlock()
	return s.read()
}

func (s *Store) read() (*Bindings, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Bindings{Version: 1, Hosts: map[string]*Binding{}, Pending: map[string]*Pending{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ra: %w", err)
	}
	var b Bindings
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("ra: %s is not a bindings file (%v); fix or remove it", s.path, err)
	}
	if b.Version != 1 {
		return nil, fmt.Errorf("ra: %s: unknown version %d", s.path, b.Version)
	}
	if b.Hosts == nil {
		b.Hosts = map[string]*Binding{}
	}
	if b.Pending == nil {
		b.Pending = map[string]*Pending{}
	}
	return &b, nil
}

// Approve binds host to ekHash: the pending request's EK when ekHash is empty.
func (s *Store) Approve(host, ekHash string, now time.Time) (*Binding, error) {
	var out *Binding
	err := s.Update(func(b *Bindings) error {
		if ekHash == "" {
			p := b.Pending[host]
			if p == nil {
				return fmt.Errorf("ra: no pending request for %s; give the EK hash with --ek to bind it ahead of time", host)
			}
			ekHash = p.EKHash
		}
		if cur := b.Hosts[host]; cur != nil && cur.EKHash != ekHash {
			return fmt.Errorf("ra: %s is bound to EK %s; remove that binding first (omens ra unbind %s)", host, cur.EKHash, host)
		}
		for _, o := range b.Hosts {
			if o.EKHash == ekHash && o.Host != host {
				return fmt.Errorf("ra: EK %s is bound to %s already: one TPM, one host", ekHash, o.Host)
			}
		}
		out = &Binding{Host: host, EKHash: ekHash, Approved: now.UTC()}
		if cur := b.Hosts[host]; cur != nil {
			out = cur
		}
		b.Hosts[host] = out
		delete(b.Pending, host)
		return nil
	})
	return out, err
}

// Unbind removes host's binding (a decommissioned or replaced machine).
func (s *Store) Unbind(host string) error {
	return s.Update(func(b *Bindings) error {
		if b.Hosts[host] == nil {
			return fmt.Errorf("ra: %s is not bound", host)
		}
		delete(b.Hosts, host)
		return nil
	})
}

// PendingList returns the pending requests, oldest first.
func (b *Bindings) PendingList() []*Pending {
	out := make([]*Pending, 0, len(b.Pending))
	for _, p := range b.Pending {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FirstSeen.Before(out[j].FirstSeen) })
	return out
}
