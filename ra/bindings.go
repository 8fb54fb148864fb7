package ra

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"omens.dev/omens/internal/limits"
	"omens.dev/omens/internal/statefile"
)

// The enrollment policy: which host names may be bound to which TPM (EK hash). A binding
// is made by an operator, ahead of time (`omens ra approve HOST --ek HASH`) or by
// approving a request that waits in the pending queue (`omens ra pending`, then
// `omens ra approve HOST`). A host is bound to one EK and an EK to one host.
//
// The pending queue keeps one request per (host, EK): a second TPM asking for a host
// another TPM asked for is a second contender, never a replacement, and the operator
// chooses between them by EK hash. A host that is bound refuses every other EK.

// BindingsVersion is the version of the bindings file this code writes. Version 1 (one
// pending request per host, one serial per binding) is read and upgraded in memory.
const BindingsVersion = 2

// MaxPending bounds the pending queue (all hosts, all contenders): each entry is a TPM
// that proved itself, but the file must not grow without end.
const MaxPending = 1024

// Binding is an approved host.
type Binding struct {
	Host     string    `json:"host"`
	EKHash   string    `json:"ek_hash"`
	Approved time.Time `json:"approved"`
	// Certificates are every DevID certificate issued to the host since it was bound,
	// oldest first: decommissioning revokes each one that is still valid.
	Certificates []*Issued `json:"certificates,omitempty"`
	// Decommissioned is set by `omens devid revoke`: the RA refuses the host until an
	// operator unbinds it and approves it again.
	Decommissioned bool `json:"decommissioned,omitempty"`
}

// Issued is one DevID certificate issued to a host.
type Issued struct {
	Serial   string    `json:"serial"`          // hexadecimal
	Issued   time.Time `json:"issued,omitzero"` // zero for a certificate upgraded from version 1
	NotAfter time.Time `json:"not_after"`
	// Superseded is when a newer certificate was issued to the host; the RA revokes a
	// superseded certificate once the supersede grace has passed (Config.SupersedeGrace).
	Superseded time.Time `json:"superseded,omitzero"`
	Revoked    time.Time `json:"revoked,omitzero"`
}

// Live reports whether c may still be used: not revoked and not expired at now.
func (c *Issued) Live(now time.Time) bool { return c.Revoked.IsZero() && now.Before(c.NotAfter) }

// Latest is the certificate last issued to the host, or nil.
func (b *Binding) Latest() *Issued {
	if len(b.Certificates) == 0 {
		return nil
	}
	return b.Certificates[len(b.Certificates)-1]
}

// Live returns the host's certificates that are neither revoked nor expired at now.
func (b *Binding) Live(now time.Time) []*Issued {
	var out []*Issued
	for _, c := range b.Certificates {
		if c.Live(now) {
			out = append(out, c)
		}
	}
	return out
}

// Pending is an enrollment request, from one TPM for one host, that no binding allowed
// yet.
type Pending struct {
	Host     string `json:"host"`
	EKHash   string `json:"ek_hash"`
	EKIssuer string `json:"ek_issuer,omitempty"`
	// Source is the client address the request came from, first and last.
	Source     string    `json:"source,omitempty"`
	LastSource string    `json:"last_source,omitempty"`
	FirstSeen  time.Time `json:"first_seen"`
	LastSeen   time.Time `json:"last_seen"`
	Requests   int       `json:"requests"`
}

// Bindings is the RA's state file.
type Bindings struct {
	Version int                 `json:"version"`
	Hosts   map[string]*Binding `json:"hosts"`
	// Pending holds, per host, every TPM that asked for it, in the order they first did.
	Pending map[string][]*Pending `json:"pending"`
}

// bindingsV1 is the version 1 file: one pending request per host (the last TPM that
// asked), one serial per binding.
type bindingsV1 struct {
	Version int `json:"version"`
	Hosts   map[string]*struct {
		Host     string    `json:"host"`
		EKHash   string    `json:"ek_hash"`
		Approved time.Time `json:"approved"`
		Serial   string    `json:"serial,omitempty"`
		NotAfter time.Time `json:"not_after,omitempty"`
		Revoked  bool      `json:"revoked,omitempty"`
	} `json:"hosts"`
	Pending map[string]*Pending `json:"pending"`
}

// upgrade turns a version 1 file into version 2, losing nothing: the serial becomes the
// host's one certificate on record (revoked at the time of the upgrade when version 1
// said revoked, since version 1 did not record when) and a revoked binding a
// decommissioned one.
func (v1 *bindingsV1) upgrade(now time.Time) *Bindings {
	b := &Bindings{Version: BindingsVersion, Hosts: map[string]*Binding{}, Pending: map[string][]*Pending{}}
	for k, h := range v1.Hosts {
		if h == nil {
			continue
		}
		bd := &Binding{Host: h.Host, EKHash: h.EKHash, Approved: h.Approved, Decommissioned: h.Revoked}
		if h.Serial != "" {
			c := &Issued{Serial: h.Serial, NotAfter: h.NotAfter}
			if h.Revoked {
				c.Revoked = now.UTC()
			}
			bd.Certificates = []*Issued{c}
		}
		b.Hosts[k] = bd
	}
	for k, p := range v1.Pending {
		if p != nil {
			b.Pending[k] = []*Pending{p}
		}
	}
	return b
}

// Store reads and changes the bindings under a lock every holder shares, so the serving
// RA (or several replicas of it) and the operator's CLI can all write them. They live in a
// file (OpenStore, the default on one machine) or in PostgreSQL (OpenDBStore, storage.go).
type Store struct {
	b   bindingsBackend
	now func() time.Time
	// sessions is where a Server built on this Store keeps open enrollments: nil for
	// the Server's own memory, the database's table for a database Store.
	sessions sessionStore
}

// OpenStore returns the bindings store in dir (created if needed).
func OpenStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ra: state directory: %w", err)
	}
	s := &Store{now: time.Now}
	s.b = &fileBindings{path: filepath.Join(dir, "bindings.json"), now: func() time.Time { return s.now() }}
	return s, nil
}

// Path is where the bindings are: the bindings file, or "PostgreSQL host=... db=..."
// (never the password).
func (s *Store) Path() string { return s.b.where() }

// Close releases what the Store holds (the database's connections).
func (s *Store) Close() { s.b.close() }

// Update runs f on the current bindings under the lock and saves them when f returns nil.
func (s *Store) Update(f func(*Bindings) error) error {
	return s.b.update(func(b *Bindings) error {
		if err := f(b); err != nil {
			return err
		}
		b.Version = BindingsVersion
		return nil
	})
}

// Read returns the current bindings.
func (s *Store) Read() (*Bindings, error) { return s.b.read() }

// fileBindings is the bindings file.
type fileBindings struct {
	path string
	now  func() time.Time
}

func (s *fileBindings) where() string { return s.path }
func (s *fileBindings) close()        {}

func (s *fileBindings) update(f func(*Bindings) error) error {
	unlock, err := statefile.Lock(s.path + ".lock")
	if err != nil {
		return fmt.Errorf("ra: %w", err)
	}
	defer unlock()
	b, err := s.readLocked()
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

func (s *fileBindings) read() (*Bindings, error) {
	unlock, err := statefile.Lock(s.path + ".lock")
	if err != nil {
		return nil, fmt.Errorf("ra: %w", err)
	}
	defer unlock()
	return s.readLocked()
}

func (s *fileBindings) readLocked() (*Bindings, error) {
	data, err := limits.ReadFile(s.path, limits.RABindings)
	if errors.Is(err, fs.ErrNotExist) {
		return emptyBindings(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("ra: %w", err)
	}
	return parseBindings(s.path, data, s.now())
}

func emptyBindings() *Bindings {
	return &Bindings{Version: BindingsVersion, Hosts: map[string]*Binding{}, Pending: map[string][]*Pending{}}
}

// parseBindings decodes a bindings file of any known version.
func parseBindings(path string, data []byte, now time.Time) (*Bindings, error) {
	var head struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("ra: %s is not a bindings file (%v); fix or remove it", path, err)
	}
	var b *Bindings
	switch head.Version {
	case 1:
		var v1 bindingsV1
		if err := json.Unmarshal(data, &v1); err != nil {
			return nil, fmt.Errorf("ra: %s is not a version 1 bindings file (%v); fix or remove it", path, err)
		}
		b = v1.upgrade(now)
	case BindingsVersion:
		b = &Bindings{}
		if err := json.Unmarshal(data, b); err != nil {
			return nil, fmt.Errorf("ra: %s is not a bindings file (%v); fix or remove it", path, err)
		}
	default:
		return nil, fmt.Errorf("ra: %s: unknown version %d (this RA reads 1 and %d)", path, head.Version, BindingsVersion)
	}
	if b.Hosts == nil {
		b.Hosts = map[string]*Binding{}
	}
	if b.Pending == nil {
		b.Pending = map[string][]*Pending{}
	}
	// Drop null entries, which hold nothing; refuse an entry filed under another host's
	// name, which a hand edit could make and the policy would then misread.
	for k, h := range b.Hosts {
		if h == nil {
			delete(b.Hosts, k)
			continue
		}
		if h.Host != k {
			return nil, fmt.Errorf("ra: %s: binding of host %q filed under %q; fix or remove it", path, h.Host, k)
		}
		h.Certificates = slices.DeleteFunc(h.Certificates, func(c *Issued) bool { return c == nil })
	}
	for k, ps := range b.Pending {
		ps = slices.DeleteFunc(ps, func(p *Pending) bool { return p == nil })
		for _, p := range ps {
			if p.Host != k {
				return nil, fmt.Errorf("ra: %s: pending request for host %q filed under %q; fix or remove it", path, p.Host, k)
			}
		}
		if len(ps) == 0 {
			delete(b.Pending, k)
		} else {
			b.Pending[k] = ps
		}
	}
	return b, nil
}

// ApprovalError is a refusal of `omens ra approve`.
type ApprovalError struct {
	Host string
	// Contenders are the EK hashes that asked for the host when the operator did not say
	// which one to bind.
	Contenders []string
	msg        string
}

func (e *ApprovalError) Error() string { return e.msg }

// Approve binds host to ekHash. With ekHash empty it binds the one TPM that asked for the
// host, and refuses to choose when more than one did: which TPM is the real host is the
// operator's decision, made with --ek.
func (s *Store) Approve(host, ekHash string, now time.Time) (*Binding, error) {
	var out *Binding
	err := s.Update(func(b *Bindings) error {
		if ekHash == "" {
			ps := b.Pending[host]
			switch len(ps) {
			case 0:
				return &ApprovalError{Host: host, msg: fmt.Sprintf("ra: no pending request for %s; give the EK hash with --ek to bind it ahead of time", host)}
			case 1:
				ekHash = ps[0].EKHash
			default:
				e := &ApprovalError{Host: host}
				var flags []string
				for _, p := range ps {
					e.Contenders = append(e.Contenders, p.EKHash)
					flags = append(flags, "--ek "+p.EKHash)
				}
				e.msg = fmt.Sprintf("ra: %d TPMs asked for %s; choose one by its EK hash (omens ra pending shows each one's first request, address and EK issuer): %s",
					len(ps), host, strings.Join(flags, ", "))
				return e
			}
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
		// The other contenders are refused (host_binding) from now on; their requests
		// stay in the RA's log.
		delete(b.Pending, host)
		return nil
	})
	return out, err
}

// LiveError refuses to forget a host whose DevID certificates are still valid.
type LiveError struct {
	Host    string
	Serials []string
}

func (e *LiveError) Error() string {
	return fmt.Sprintf("ra: %s has DevID certificates that are still valid (serials %s): revoke them first with `omens devid revoke --host %s` (step-ca flags), then unbind",
		e.Host, strings.Join(e.Serials, ", "), e.Host)
}

// Unbind removes host's binding (a decommissioned or replaced machine). It refuses while
// a certificate issued to the host is neither revoked nor expired: forgetting it would
// leave a valid DevID that no decommission can find.
func (s *Store) Unbind(host string, now time.Time) error {
	return s.Update(func(b *Bindings) error {
		bd := b.Hosts[host]
		if bd == nil {
			return fmt.Errorf("ra: %s is not bound", host)
		}
		if live := bd.Live(now); len(live) > 0 {
			e := &LiveError{Host: host}
			for _, c := range live {
				e.Serials = append(e.Serials, c.Serial)
			}
			return e
		}
		delete(b.Hosts, host)
		return nil
	})
}

// PendingList returns the pending requests, oldest first.
func (b *Bindings) PendingList() []*Pending {
	var out []*Pending
	for _, ps := range b.Pending {
		out = append(out, ps...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].FirstSeen.Before(out[j].FirstSeen) })
	return out
}

// pendingCount is the number of entries in the pending queue.
func (b *Bindings) pendingCount() int {
	n := 0
	for _, ps := range b.Pending {
		n += len(ps)
	}
	return n
}
