package tokens

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

// DefaultCacheMaxTTL bounds how long a verified token stays cached, whatever
// its exp: after that it is verified again (so a key withdrawn from the
// issuer's JWKS stops being honoured within this time).
const DefaultCacheMaxTTL = 5 * time.Minute

// Cache holds the results of signature verification (the parsed, verified
// claims) keyed by the SHA-256 of the token; the token itself is never
// stored. Entries expire with the token's exp (plus leeway), at most after
// DefaultCacheMaxTTL. It is backed by ristretto: lookups take no lock that
// all requests share. A Cache may be shared by many Validators and servers:
// a hit is still checked against the requirements of the request.
type Cache struct {
	rc     *ristretto.Cache[uint64, *entry]
	maxTTL time.Duration
	hits   atomic.Uint64
	misses atomic.Uint64
}

// CacheStats are counters for metrics and the admin API.
type CacheStats struct {
	Hits, Misses uint64
	// Ristretto's own view: keys added, evicted, and sets dropped under
	// contention or refused by its admission policy.
	KeysAdded, KeysEvicted, SetsDropped, SetsRejected uint64
	CostAdded, CostEvicted                            uint64
}

// entry is one verified token. It is immutable once stored.
type entry struct {
	hash   [32]byte // full SHA-256; the ristretto key is its first 8 bytes
	ks     *KeySet  // the key set that verified it
	fp     string   // ks.fp, so an equivalent KeySet (after a reload) matches
	id     *Identity
	exp    time.Time
	leeway time.Duration
	tenant string // value of the issuer's tenant claim, "" if absent
}

// NewCache returns a cache limited to maxCost bytes (approximate: each entry
// costs the size of its token's payload plus a fixed overhead).
func NewCache(maxCost int64) (*Cache, error) {
	if maxCost <= 0 {
		return nil, errors.New("tokens: cache max cost must be positive")
	}
	// ~1 KiB per entry; ristretto wants 10 counters per expected item.
	items := max(maxCost/1024, 100)
	rc, err := ristretto.NewCache(&ristretto.Config[uint64, *entry]{
		NumCounters: items * 10,
		MaxCost:     maxCost,
		BufferItems: 64,
		Metrics:     true,
		// Keys are already uniformly distributed hash prefixes; the full
		// hash is compared on every hit.
		KeyToHash: func(k uint64) (uint64, uint64) { return k, 0 },
	})
	if err != nil {
		return nil, err
	}
	return &Cache{rc: rc, maxTTL: DefaultCacheMaxTTL}, nil
}

// Close releases the cache's goroutines. A closed cache must not be used.
func (c *Cache) Close() { c.rc.Close() }

// Clear drops every entry (for example after an issuer's keys were revoked).
func (c *Cache) Clear() { c.rc.Clear() }

// Stats returns a snapshot of the counters.
func (c *Cache) Stats() CacheStats {
	m := c.rc.Metrics
	return CacheStats{
		Hits: c.hits.Load(), Misses: c.misses.Load(),
		KeysAdded: m.KeysAdded(), KeysEvicted: m.KeysEvicted(),
		SetsDropped: m.SetsDropped(), SetsRejected: m.SetsRejected(),
		CostAdded: m.CostAdded(), CostEvicted: m.CostEvicted(),
	}
}

func keyOf(h *[32]byte) uint64 {
	return uint64(h[0]) | uint64(h[1])<<8 | uint64(h[2])<<16 | uint64(h[3])<<24 |
		uint64(h[4])<<32 | uint64(h[5])<<40 | uint64(h[6])<<48 | uint64(h[7])<<56
}

func (c *Cache) get(h *[32]byte) *entry {
	e, ok := c.rc.Get(keyOf(h))
	if !ok || e == nil || e.hash != *h {
		c.misses.Add(1)
		return nil
	}
	c.hits.Add(1)
	return e
}

func (c *Cache) set(e *entry, cost int64, now time.Time) {
	ttl := e.exp.Add(e.leeway).Sub(now)
	if ttl > c.maxTTL {
		ttl = c.maxTTL
	}
	if ttl <= 0 {
		return
	}
	c.rc.SetWithTTL(keyOf(&e.hash), e, cost+entryOverhead, ttl)
}

const entryOverhead = 512
