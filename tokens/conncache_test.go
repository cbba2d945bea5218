package tokens

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddymcp/gateway/internal/oidctest"
)

// ccClock is a settable clock.
type ccClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *ccClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *ccClock) Set(d time.Duration, base time.Time) {
	c.mu.Lock()
	c.now = base.Add(d)
	c.mu.Unlock()
}

func ccCache(t testing.TB, cfg ConnCacheConfig) *ConnCache {
	t.Helper()
	c, err := NewConnCache(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func ccFetch(a *Acquirer, req AcquireRequest) func(context.Context) (*ConnectionToken, error) {
	return func(ctx context.Context) (*ConnectionToken, error) { return a.Acquire(ctx, req) }
}

func TestConnCacheSingleflight200(t *testing.T) {
	p := acqProvider(t)
	acqRegister(t, p, oidctest.Client{ID: "acme-gw", Tenant: "acme"})
	p.SetDelay(oidctest.EndpointToken, 30*time.Millisecond)
	a := acqNew(t, AcquirerConfig{TokenURL: p.TokenURL(), ClientID: "acme-gw", ClientSecret: acqSecret})
	c := ccCache(t, ConnCacheConfig{})
	key := ConnCacheKey{Tenant: "acme", Connection: "notion", Scopes: []string{"read_content"}}
	const n = 200
	var wg sync.WaitGroup
	start := make(chan struct{})
	toks := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			tok, err := c.Get(context.Background(), key, ccFetch(a, AcquireRequest{Scopes: key.Scopes}))
			errs[i] = err
			if tok != nil {
				toks[i] = tok.AccessToken
			}
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || toks[i] == "" || toks[i] != toks[0] {
			t.Fatalf("call %d: %v", i, errs[i])
		}
	}
	if got := p.TokenRequests("acme-gw"); got != 1 {
		t.Fatalf("200 concurrent cold misses made %d token requests, want 1", got)
	}
	st := c.Stats()
	if st.Requests != 1 || st.Hits+st.Misses != n {
		t.Fatalf("stats %+v", st)
	}
	// And one more call is a plain hit.
	if _, err := c.Get(context.Background(), key, ccFetch(a, AcquireRequest{})); err != nil || c.Stats().Hits != st.Hits+1 {
		t.Fatalf("no hit: %v %+v", err, c.Stats())
	}
}

func TestConnCacheSingleflightFailureShared(t *testing.T) {
	p := acqProvider(t)
	acqRegister(t, p, oidctest.Client{ID: "acme-gw"})
	p.SetStatus(oidctest.EndpointToken, http.StatusServiceUnavailable)
	p.SetDelay(oidctest.EndpointToken, 30*time.Millisecond)
	a := acqNew(t, AcquirerConfig{TokenURL: p.TokenURL(), ClientID: "acme-gw", ClientSecret: acqSecret})
	c := ccCache(t, ConnCacheConfig{})
	key := ConnCacheKey{Tenant: "acme", Connection: "notion"}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Get(context.Background(), key, ccFetch(a, AcquireRequest{}))
			var ae *AcquireError
			if errors.As(err, &ae) && ae.Connection == "notion" && ae.Status == 503 {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 200 {
		t.Fatalf("%d failed as expected", failed.Load())
	}
	if got := p.TokenRequests("acme-gw"); got != 1 {
		t.Fatalf("%d token requests while down, want 1 (shared + backoff)", got)
	}
}

func TestConnCacheTenantIsolation500(t *testing.T) {
	p := acqProvider(t)
	acqRegister(t, p, oidctest.Client{ID: "acme-gw", Tenant: "acme"})
	acqRegister(t, p, oidctest.Client{ID: "globex-gw", Tenant: "globex"})
	acq := map[string]*Acquirer{
		"acme":   acqNew(t, AcquirerConfig{Tenant: "acme", TokenURL: p.TokenURL(), ClientID: "acme-gw", ClientSecret: acqSecret}),
		"globex": acqNew(t, AcquirerConfig{Tenant: "globex", TokenURL: p.TokenURL(), ClientID: "globex-gw", ClientSecret: acqSecret}),
	}
	c := ccCache(t, ConnCacheConfig{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]map[string]bool{"acme": {}, "globex": {}}
	errc := make(chan error, 500)
	for i := range 500 {
		tenant := []string{"acme", "globex"}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Same connection name and scopes in both tenants: only the
			// tenant tells them apart.
			key := ConnCacheKey{Tenant: tenant, Connection: "notion", Scopes: []string{"read"}}
			tok, err := c.Get(context.Background(), key, ccFetch(acq[tenant], AcquireRequest{}))
			if err != nil {
				errc <- err
				return
			}
			mu.Lock()
			seen[tenant][tok.AccessToken] = true
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	for tenant, toks := range seen {
		if len(toks) != 1 {
			t.Fatalf("%s got %d distinct tokens", tenant, len(toks))
		}
		for tok := range toks {
			claims, err := p.Verify(tok)
			if err != nil || claims["tenant"] != tenant {
				t.Fatalf("%s got a token of tenant %v (%v)", tenant, claims["tenant"], err)
			}
		}
	}
	if p.TokenRequests("acme-gw") != 1 || p.TokenRequests("globex-gw") != 1 {
		t.Fatalf("token requests acme=%d globex=%d", p.TokenRequests("acme-gw"), p.TokenRequests("globex-gw"))
	}
}

func TestConnCacheExpiryRefreshAhead(t *testing.T) {
	p := acqProvider(t)
	acqRegister(t, p, oidctest.Client{ID: "acme-gw", TokenTTL: 100 * time.Second})
	base := time.Now()
	clk := &ccClock{now: base}
	a := acqNew(t, AcquirerConfig{TokenURL: p.TokenURL(), ClientID: "acme-gw", ClientSecret: acqSecret, Now: clk.Now})
	c := ccCache(t, ConnCacheConfig{Now: clk.Now})
	key := ConnCacheKey{Tenant: "acme", Connection: "notion"}
	get := func() string {
		t.Helper()
		tok, err := c.Get(context.Background(), key, ccFetch(a, AcquireRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		return tok.AccessToken
	}
	// life 100s, margin min(30s, 10s) = 10s: usable until 90s; refresh
	// ahead from 72s (last 20% of 90s).
	t1 := get()
	clk.Set(50*time.Second, base)
	if get() != t1 || p.TokenRequests("acme-gw") != 1 {
		t.Fatal("no hit at 50s")
	}
	clk.Set(75*time.Second, base)
	if get() != t1 { // served, refresh in background
		t.Fatal("refresh-ahead did not serve the cached token")
	}
	ccEventually(t, func() bool { return p.TokenRequests("acme-gw") == 2 })
	ccEventually(t, func() bool { return get() != t1 })
	ccEventually(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.calls) == 0 })
	if get(); p.TokenRequests("acme-gw") != 2 {
		t.Fatalf("more than one background refresh: %d", p.TokenRequests("acme-gw"))
	}
	t2 := get()
	// The new token was fetched at 75s: usable until 165s.
	clk.Set(160*time.Second, base)
	if get() != t2 { // refresh-ahead again (from 147s)
		t.Fatal("not served at 160s")
	}
	ccEventually(t, func() bool { return p.TokenRequests("acme-gw") == 3 })
	ccEventually(t, func() bool { return get() != t2 })
	ccEventually(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.calls) == 0 })
	clk.Set(400*time.Second, base)
	t4 := get() // everything expired: synchronous fetch
	if p.TokenRequests("acme-gw") != 4 || t4 == t2 {
		t.Fatalf("no fetch after expiry: %d", p.TokenRequests("acme-gw"))
	}
	if st := c.Stats(); st.Refreshes != 2 || st.Requests != 4 {
		t.Fatalf("stats %+v", st)
	}
}

// ccEventually polls cond, nudging with a Get-free wait.
func ccEventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConnCacheServesCachedWhileDown(t *testing.T) {
	p := acqProvider(t)
	acqRegister(t, p, oidctest.Client{ID: "acme-gw", TokenTTL: 100 * time.Second})
	base := time.Now()
	clk := &ccClock{now: base}
	a := acqNew(t, AcquirerConfig{TokenURL: p.TokenURL(), ClientID: "acme-gw", ClientSecret: acqSecret, Now: clk.Now})
	c := ccCache(t, ConnCacheConfig{Now: clk.Now})
	key := ConnCacheKey{Tenant: "acme", Connection: "notion"}
	get := func() (*ConnectionToken, error) {
		return c.Get(context.Background(), key, ccFetch(a, AcquireRequest{}))
	}
	t1, err := get()
	if err != nil {
		t.Fatal(err)
	}
	p.SetStatus(oidctest.EndpointToken, http.StatusServiceUnavailable)
	// Refresh-ahead window: the background refresh fails, the token serves.
	clk.Set(80*time.Second, base)
	if tok, err := get(); err != nil || tok != t1 {
		t.Fatalf("refresh-ahead while down: %v", err)
	}
	ccEventually(t, func() bool { return c.Stats().Failures == 1 })
	// Past the safety margin, before expiry: the fetch fails, the cached
	// token still serves.
	clk.Set(95*time.Second, base)
	if tok, err := get(); err != nil || tok != t1 {
		t.Fatalf("stale serve: %v", err)
	}
	// Within the failure backoff: no new request, still served.
	n := p.TokenRequests("acme-gw")
	clk.Set(95*time.Second+500*time.Millisecond, base)
	if tok, err := get(); err != nil || tok != t1 || p.TokenRequests("acme-gw") != n {
		t.Fatalf("backoff: %v", err)
	}
	if c.Stats().Stale < 2 {
		t.Fatalf("stats %+v", c.Stats())
	}
	// Expired: the error names the connection and carries no secret.
	clk.Set(101*time.Second, base)
	_, err = get()
	var ae *AcquireError
	if !errors.As(err, &ae) || ae.Connection != "notion" || ae.Status != 503 {
		t.Fatalf("after expiry: %v", err)
	}
	acqNoSecret(t, err.Error(), acqSecret, t1.AccessToken)
	// Back up (after the backoff): a fresh token.
	p.SetStatus(oidctest.EndpointToken, 0)
	clk.Set(103*time.Second, base)
	if tok, err := get(); err != nil || tok == t1 {
		t.Fatalf("recovery: %v", err)
	}
}

func TestConnCacheSlowEndpointBounded(t *testing.T) {
	p := acqProvider(t)
	acqRegister(t, p, oidctest.Client{ID: "acme-gw"})
	p.SetDelay(oidctest.EndpointToken, 3*time.Second)
	a := acqNew(t, AcquirerConfig{TokenURL: p.TokenURL(), ClientID: "acme-gw", ClientSecret: acqSecret, Timeout: 150 * time.Millisecond})
	c := ccCache(t, ConnCacheConfig{})
	start := time.Now()
	_, err := c.Get(context.Background(), ConnCacheKey{Tenant: "acme", Connection: "notion"}, ccFetch(a, AcquireRequest{}))
	var ae *AcquireError
	if !errors.As(err, &ae) || !ae.Timeout {
		t.Fatalf("err %v", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("took %v", el)
	}
}

func TestConnCacheCallerCancelDoesNotCancelFetch(t *testing.T) {
	p := acqProvider(t)
	acqRegister(t, p, oidctest.Client{ID: "acme-gw"})
	p.SetDelay(oidctest.EndpointToken, 200*time.Millisecond)
	a := acqNew(t, AcquirerConfig{TokenURL: p.TokenURL(), ClientID: "acme-gw", ClientSecret: acqSecret})
	c := ccCache(t, ConnCacheConfig{})
	key := ConnCacheKey{Tenant: "acme", Connection: "notion"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Get(ctx, key, ccFetch(a, AcquireRequest{})); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	ccEventually(t, func() bool { return c.Stats().Requests == 1 && c.lookup(ccDigest(key)) != nil })
	if _, err := c.Get(context.Background(), key, ccFetch(a, AcquireRequest{})); err != nil {
		t.Fatal(err)
	}
	if p.TokenRequests("acme-gw") != 1 {
		t.Fatalf("requests %d", p.TokenRequests("acme-gw"))
	}
}

func ccDigest(k ConnCacheKey) *[32]byte { d := connDigest(&k); return &d }

func TestConnCacheKeys(t *testing.T) {
	k := func(tenant, conn, fp, subj string, scopes ...string) [32]byte {
		return *ccDigest(ConnCacheKey{Tenant: tenant, Connection: conn, Fingerprint: fp, Subject: subj, Scopes: scopes})
	}
	if k("acme", "n", "", "", "b", "a", "b") != k("acme", "n", "", "", "a", "b") {
		t.Fatal("scope order/duplicates change the key")
	}
	distinct := [][32]byte{
		k("acme", "n", "", "", "a"), k("globex", "n", "", "", "a"), k("acme", "m", "", "", "a"),
		k("acme", "n", "fp2", "", "a"), k("acme", "n", "", "tok", "a"), k("acme", "n", "", "tok2", "a"),
		k("acme", "n", "", "", "a", "b"), k("acme", "n", "", ""), k("acmen", "", "", "", "a"),
		k("acme", "n", "", "", "a b"),
	}
	seen := map[[32]byte]int{}
	for i, d := range distinct {
		if j, ok := seen[d]; ok {
			t.Fatalf("keys %d and %d collide", i, j)
		}
		seen[d] = i
	}
	c := ccCache(t, ConnCacheConfig{})
	if _, err := c.Get(context.Background(), ConnCacheKey{Connection: "n"}, nil); !errors.Is(err, ErrConnCacheKey) {
		t.Fatalf("no tenant: %v", err)
	}
}

func TestConnCacheDeleteAndPanic(t *testing.T) {
	c := ccCache(t, ConnCacheConfig{FailureBackoff: -1})
	key := ConnCacheKey{Tenant: "acme", Connection: "n"}
	var calls int
	fetch := func(context.Context) (*ConnectionToken, error) {
		calls++
		return &ConnectionToken{AccessToken: fmt.Sprint("t", calls), Expiry: time.Now().Add(time.Hour)}, nil
	}
	t1, _ := c.Get(context.Background(), key, fetch)
	c.Delete(key)
	t2, _ := c.Get(context.Background(), key, fetch)
	if t1 == t2 || calls != 2 || t2.Authorization() != "Bearer t2" {
		t.Fatal("delete did not drop the token")
	}
	k2 := ConnCacheKey{Tenant: "acme", Connection: "p"}
	if _, err := c.Get(context.Background(), k2, func(context.Context) (*ConnectionToken, error) { panic("boom") }); err == nil {
		t.Fatal("panicking fetch returned no error")
	}
}

// BenchmarkConnCacheHit is the cost of a cached connection token.
func BenchmarkConnCacheHit(b *testing.B) {
	c := ccCache(b, ConnCacheConfig{})
	key := ConnCacheKey{Tenant: "acme", Connection: "notion", Fingerprint: "0123456789abcdef", Scopes: []string{"read_content", "update_content"}}
	fetch := func(context.Context) (*ConnectionToken, error) {
		return &ConnectionToken{AccessToken: "tok", Expiry: time.Now().Add(time.Hour)}, nil
	}
	if _, err := c.Get(context.Background(), key, fetch); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Get(ctx, key, fetch); err != nil {
				b.Fatal(err)
			}
		}
	})
}
