package verify

import "sync"

// boundedMap is a map of at most max entries that forgets the oldest stored first: the
// shape of every memory the verifier keeps of what it has seen (chaincache.go, known.go,
// public.go's templates), so that no sender can grow one without bound. It is safe for
// concurrent use.
type boundedMap[K comparable, V any] struct {
	mu      sync.Mutex
	max     int
	entries map[K]V
	// order is the keys in the order they were stored; next is where the next key goes
	// once order is full.
	order []K
	next  int
}

func newBoundedMap[K comparable, V any](max int) *boundedMap[K, V] {
	return &boundedMap[K, V]{max: max, entries: map[K]V{}}
}

func (m *boundedMap[K, V]) get(k K) (V, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.entries[k]
	return v, ok
}

// put stores v under k, forgetting the oldest key when the map is full; a map of max 0
// or less stores nothing.
func (m *boundedMap[K, V]) put(k K, v V) {
	if m.max <= 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.entries[k]; !ok {
		if len(m.order) < m.max {
			m.order = append(m.order, k)
		} else {
			delete(m.entries, m.order[m.next])
			m.order[m.next] = k
			m.next = (m.next + 1) % m.max
		}
	}
	m.entries[k] = v
}

func (m *boundedMap[K, V]) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

// clear forgets every entry.
func (m *boundedMap[K, V]) clear() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries, m.order, m.next = map[K]V{}, nil, 0
}
