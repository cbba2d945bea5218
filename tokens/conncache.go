package tokens

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

// This file caches connection tokens: keyed by (tenant, connection,
// connection fingerprint, downstream scopes[, subject]) through a SHA-256 of
// those fields, so no secret or token is ever a key; one token request per
// key under concurrent misses; refresh ahead of expiry; a still-valid token
// keeps serving while the token endpoint fails.

// Defaults of ConnCacheConfig.
const (
	DefaultConnCacheMaxCost   = 16 << 20
	DefaultConnSafetyMargin   = 30 * time.Second
	DefaultConnRefreshAhead   = 0.2
	DefaultConnFailureBackoff = time.Second
	DefaultConnFetchTimeout   = 30 * time.Second
	connEntryOverhead         = 256
)

// ConnCacheConfig configures a ConnCache. Zero values take the defaults.
type ConnCacheConfig struct {
	// MaxCost is the ristretto budget in bytes (token length + overhead).
	MaxCost int64
	// SafetyMargin: a token is used until its expiry minus the smaller of
	// SafetyMargin and a tenth of its lifetime; after that a request fetches
	// a new one (and still gets the old one if that fails and it has not
	// expired yet).
	SafetyMargin time.Duration
	// RefreshAhead is the fraction of the usable lifetime at its end in
	// which a hit starts one background refresh (default 0.2).
	RefreshAhead float64
	// FailureBackoff: after a failed request for a key, requests for that
	// key within this time get the same error (or the still-valid cached
	// token) without another request. Negative disables it.
	FailureBackoff time.Duration
	// FetchTimeout bounds a fetch as a last resort; the fetch function is
	// expected to bound itself (an Acquirer does, 10s by default).
	FetchTimeout time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// ConnCacheKey identifies a cached connection token. Tenant and Connection
// are required. None of the fields is stored: the cache keeps a SHA-256 of
// all of them.
type ConnCacheKey struct {
	Tenant     string
	Connection string
	// Fingerprint identifies the connection's configuration (so a changed
	// client, URL or secret after a reload never gets an old token).
	Fingerprint string
	// Scopes are the downstream scopes (order and duplicates do not matter).
	Scopes []string
	// Subject distinguishes tokens per subject: the agent's token for
	// token exchange, or the agent's identity for a minted resource token.
	Subject string
}

// ConnCacheStats are counters for metrics and the admin API.
type ConnCacheStats struct {
	Hits   uint64 // served from the cache
	Misses uint64 // not in the cache (or past the safety margin)
	// Requests are fetches started (token requests); Failures those that
	// failed. Refreshes counts background refreshes started.
	Requests, Failures, Refreshes uint64
	// Shared counts callers that waited for another caller's fetch.
	Shared uint64
	// Stale counts tokens served past the safety margin because a fetch
	// failed (they had not expired).
	Stale uint64
	// Entries is the approximate number of cached tokens.
	Entries uint64
}

// ErrConnCacheKey is returned for a key without tenant or connection.
var ErrConnCacheKey = errors.New("tokens: connection cache key needs a tenant and a connection")

// ConnCache caches connection tokens. It is safe for concurrent use and may
// be shared by many connections (and kept across config reloads).
type ConnCache struct {
	cfg ConnCacheConfig
	rc  *ristretto.Cache[uint64, *connEntry]

	mu       sync.Mutex
	calls    map[[32]byte]*connCall
	failures map[[32]byte]connFailure

	hits, misses, requests, failed, refreshes, shared, stale atomic.Uint64
}

type connEntry struct {
	digest     [32]byte
	tok        *ConnectionToken
	refreshAt  time.Time // a hit after this starts a background refresh
	staleAt    time.Time // a request after this fetches synchronously
	exp        time.Time // the token's expiry: never served after this
	refreshing atomic.Bool
}

type connCall struct {
	done chan struct{}
	tok  *ConnectionToken
	err  error
}

type connFailure struct {
	until time.Time
	err   error
}

// NewConnCache returns a cache. Close it when done.
func NewConnCache(cfg ConnCacheConfig) (*ConnCache, error) {
	if cfg.MaxCost <= 0 {
		cfg.MaxCost = DefaultConnCacheMaxCost
	}
	if cfg.SafetyMargin <= 0 {
		cfg.SafetyMargin = DefaultConnSafetyMargin
	}
	if cfg.RefreshAhead <= 0 || cfg.RefreshAhead >= 1 {
		cfg.RefreshAhead = DefaultConnRefreshAhead
	}
	if cfg.FailureBackoff == 0 {
		cfg.FailureBackoff = DefaultConnFailureBackoff
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = DefaultConnFetchTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	items := max(cfg.MaxCost/1024, 100)
	rc, err := ristretto.NewCache(&ristretto.Config[uint64, *connEntry]{
		NumCounters: items * 10,
		MaxCost:     cfg.MaxCost,
		BufferItems: 64,
		Metrics:     true,
		KeyToHash:   func(k uint64) (uint64, uint64) { return k, 0 },
	})
	if err != nil {
		return nil, err
	}
	return &ConnCache{
		cfg: cfg, rc: rc,
		calls:    map[[32]byte]*connCall{},
		failures: map[[32]byte]connFailure{},
	}, nil
}

// Close releases the cache's goroutines.
func (c *ConnCache) Close() { c.rc.Close() }

// Clear drops every cached token.
func (c *ConnCache) Clear() {
	c.rc.Clear()
	c.mu.Lock()
	clear(c.failures)
	c.mu.Unlock()
}

// Delete drops the token cached for key (for example after the upstream
// refused it).
func (c *ConnCache) Delete(key ConnCacheKey) {
	d := connDigest(&key)
	c.rc.Del(connKeyOf(&d))
	c.rc.Wait()
}

// Stats returns a snapshot of the counters.
func (c *ConnCache) Stats() ConnCacheStats {
	m := c.rc.Metrics
	var entries uint64
	if a, e := m.KeysAdded(), m.KeysEvicted(); a > e {
		entries = a - e
	}
	return ConnCacheStats{
		Hits: c.hits.Load(), Misses: c.misses.Load(),
		Requests: c.requests.Load(), Failures: c.failed.Load(), Refreshes: c.refreshes.Load(),
		Shared: c.shared.Load(), Stale: c.stale.Load(), Entries: entries,
	}
}

// Get returns the cached token for key or obtains one with fetch. Concurrent
// misses for one key share one fetch, which runs detached from the callers'
// cancellation (a caller whose ctx ends gets ctx.Err(); the fetch goes on
// and fills the cache for the others). A fetch error is returned as is
// unless a cached, unexpired token can be served instead.
func (c *ConnCache) Get(ctx context.Context, key ConnCacheKey, fetch func(context.Context) (*ConnectionToken, error)) (*ConnectionToken, error) {
	if key.Tenant == "" || key.Connection == "" {
		return nil, ErrConnCacheKey
	}
	d := connDigest(&key)
	now := c.cfg.Now()
	var stale *connEntry
	if e := c.lookup(&d); e != nil && now.Before(e.exp) {
		if now.Before(e.staleAt) {
			c.hits.Add(1)
			if !now.Before(e.refreshAt) && e.refreshing.CompareAndSwap(false, true) {
				c.refreshes.Add(1)
				c.start(ctx, d, fetch)
			}
			return e.tok, nil
		}
		stale = e
	}
	c.misses.Add(1)
	if f, ok := c.failure(&d, now); ok {
		if stale != nil {
			c.stale.Add(1)
			return stale.tok, nil
		}
		return nil, f
	}
	call, joined, hit := c.join(ctx, d, fetch)
	if hit != nil {
		return hit, nil
	}
	if joined {
		c.shared.Add(1)
	}
	select {
	case <-call.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if call.err != nil {
		if stale != nil && c.cfg.Now().Before(stale.exp) {
			c.stale.Add(1)
			return stale.tok, nil
		}
		return nil, call.err
	}
	return call.tok, nil
}

func (c *ConnCache) lookup(d *[32]byte) *connEntry {
	e, ok := c.rc.Get(connKeyOf(d))
	if !ok || e == nil || e.digest != *d {
		return nil
	}
	return e
}

func (c *ConnCache) failure(d *[32]byte, now time.Time) (error, bool) {
	if c.cfg.FailureBackoff < 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.failures[*d]
	if !ok {
		return nil, false
	}
	if !now.Before(f.until) {
		delete(c.failures, *d)
		return nil, false
	}
	return f.err, true
}

// join returns the fetch in flight for d, starting one if there is none.
// Under the lock it looks at the cache again: a fetch that completed since
// the caller's lookup has stored its token before leaving the map.
func (c *ConnCache) join(ctx context.Context, d [32]byte, fetch func(context.Context) (*ConnectionToken, error)) (call *connCall, joined bool, hit *ConnectionToken) {
	c.mu.Lock()
	if call := c.calls[d]; call != nil {
		c.mu.Unlock()
		return call, true, nil
	}
	if e := c.lookup(&d); e != nil && c.cfg.Now().Before(e.staleAt) {
		c.mu.Unlock()
		c.hits.Add(1)
		return nil, false, e.tok
	}
	call = &connCall{done: make(chan struct{})}
	c.calls[d] = call
	c.mu.Unlock()
	c.requests.Add(1)
	go c.run(context.WithoutCancel(ctx), d, fetch, call)
	return call, false, nil
}

// start begins a background refresh unless a fetch is in flight.
func (c *ConnCache) start(ctx context.Context, d [32]byte, fetch func(context.Context) (*ConnectionToken, error)) {
	c.mu.Lock()
	if c.calls[d] != nil {
		c.mu.Unlock()
		return
	}
	call := &connCall{done: make(chan struct{})}
	c.calls[d] = call
	c.mu.Unlock()
	c.requests.Add(1)
	go c.run(context.WithoutCancel(ctx), d, fetch, call)
}

func (c *ConnCache) run(ctx context.Context, d [32]byte, fetch func(context.Context) (*ConnectionToken, error), call *connCall) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.FetchTimeout)
	defer cancel()
	tok, err := connSafeFetch(ctx, fetch)
	if err == nil && tok == nil {
		err = errors.New("tokens: fetch returned no token")
	}
	now := c.cfg.Now()
	if err == nil {
		c.store(d, tok, now)
	} else {
		c.failed.Add(1)
	}
	call.tok, call.err = tok, err
	c.mu.Lock()
	delete(c.calls, d)
	if err != nil && c.cfg.FailureBackoff > 0 {
		c.failures[d] = connFailure{until: now.Add(c.cfg.FailureBackoff), err: err}
	} else if err == nil {
		delete(c.failures, d)
	}
	c.mu.Unlock()
	close(call.done)
}

func connSafeFetch(ctx context.Context, fetch func(context.Context) (*ConnectionToken, error)) (tok *ConnectionToken, err error) {
	defer func() {
		if r := recover(); r != nil {
			tok, err = nil, errors.New("tokens: token fetch panicked")
		}
	}()
	return fetch(ctx)
}

// store caches tok until its expiry; the usable life ends a safety margin
// earlier and the refresh-ahead window is the last RefreshAhead of that.
func (c *ConnCache) store(d [32]byte, tok *ConnectionToken, now time.Time) {
	if tok.acqAuthz == "" {
		tok.acqAuthz = "Bearer " + tok.AccessToken
	}
	exp := tok.Expiry
	life := exp.Sub(now)
	if life <= 0 {
		return
	}
	margin := min(c.cfg.SafetyMargin, life/10)
	usable := life - margin
	e := &connEntry{
		digest:    d,
		tok:       tok,
		exp:       exp,
		staleAt:   now.Add(usable),
		refreshAt: now.Add(usable - time.Duration(float64(usable)*c.cfg.RefreshAhead)),
	}
	c.rc.SetWithTTL(connKeyOf(&d), e, int64(len(tok.AccessToken))+connEntryOverhead, life)
	c.rc.Wait()
}

func connKeyOf(d *[32]byte) uint64 { return binary.LittleEndian.Uint64(d[:8]) }

// connDigest hashes the key's fields, each length-prefixed; scopes are
// sorted and deduplicated first (without copying when they already are).
func connDigest(k *ConnCacheKey) [32]byte {
	var arr [512]byte
	b := arr[:0]
	b = connField(b, k.Tenant)
	b = connField(b, k.Connection)
	b = connField(b, k.Fingerprint)
	scopes := k.Scopes
	if !connSortedUnique(scopes) {
		scopes = slices.Clone(scopes)
		slices.Sort(scopes)
		scopes = slices.Compact(scopes)
	}
	b = binary.AppendUvarint(b, uint64(len(scopes)))
	for _, s := range scopes {
		b = connField(b, s)
	}
	if k.Subject != "" {
		h := sha256.Sum256([]byte(k.Subject))
		b = append(b, 1)
		b = append(b, h[:]...)
	} else {
		b = append(b, 0)
	}
	return sha256.Sum256(b)
}

func connField(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func connSortedUnique(s []string) bool {
	for i := 1; i < len(s); i++ {
		if s[i-1] >= s[i] {
			return false
		}
	}
	return true
}
