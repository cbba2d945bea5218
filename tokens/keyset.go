package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"go.uber.org/zap"
)

// Refresh timing defaults. The background refresh interval follows the JWKS
// response's Cache-Control max-age, bounded to [MinRefreshInterval,
// MaxRefreshInterval]; without one it is DefaultRefreshInterval. A token
// whose kid is unknown triggers at most one fetch per KidMissInterval.
const (
	MinRefreshInterval     = time.Minute
	MaxRefreshInterval     = time.Hour
	DefaultRefreshInterval = 15 * time.Minute
	KidMissInterval        = 10 * time.Second

	fetchTimeout  = 10 * time.Second
	maxDocSize    = 1 << 20 // JWKS / metadata documents larger than 1 MiB are refused
	minRSAKeyBits = 2048
)

var errRateLimited = errors.New("jwks refresh rate-limited")

// KeySet holds the verification keys of one issuer. It is safe for
// concurrent use; lookups are lock-free (an atomically swapped table).
type KeySet struct {
	spec   IssuerSpec
	fp     string
	client *http.Client
	log    *zap.Logger
	algs   map[string]bool

	table atomic.Pointer[keyTable]

	mu          sync.Mutex
	inflight    *fetchCall
	lastFetch   time.Time // start of the last fetch attempt
	lastKidMiss time.Time // start of the last fetch caused by an unknown kid
	jwksURI     string    // configured, or discovered (reset when a fetch fails)
	started     bool
	closed      bool
	ctx         context.Context // lifetime of background work
	cancel      context.CancelFunc
	loopDone    chan struct{}

	// timing; tests shorten these
	minInterval, maxInterval, defInterval, kidMissGap, retryMin time.Duration

	maxAge                                           atomic.Int64 // of the last JWKS response; -1: none
	refreshes, failures, kidMissFetches, rateLimited atomic.Uint64
	lastErr                                          atomic.Pointer[string]
}

// KeySetStats are counters for metrics and the admin API.
type KeySetStats struct {
	Issuer         string
	Keys           int       // usable keys currently loaded
	LastRefresh    time.Time // time of the last successful fetch (zero if none)
	Refreshes      uint64    // successful fetches
	Failures       uint64    // failed fetches (last good keys kept)
	KidMissFetches uint64    // fetches triggered by an unknown kid
	RateLimited    uint64    // unknown-kid fetches suppressed by the rate limit
	LastError      string    // last fetch error, "" after a success
}

type keyTable struct {
	byKid   map[string][]*verifyKey
	all     []*verifyKey
	fetched time.Time
}

// verifyKey is a public key ready for signature verification.
type verifyKey struct {
	kid string
	alg string // the JWK's "alg", if any: then only that algorithm may use it
	raw any    // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

type fetchCall struct {
	done chan struct{}
	err  error
}

// NewKeySet validates spec and returns an idle KeySet; call Start to load
// keys and refresh them in the background. client may be nil
// (http.DefaultClient is used; production callers should pass a client with
// sane timeouts). logger may be nil.
func NewKeySet(spec IssuerSpec, client *http.Client, logger *zap.Logger) (*KeySet, error) {
	spec, err := spec.normalize()
	if err != nil {
		return nil, err
	}
	if client == nil {
		client = http.DefaultClient
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	ks := &KeySet{
		spec:        spec,
		fp:          spec.fingerprint(),
		client:      client,
		log:         logger.With(zap.String("issuer", spec.Issuer)),
		algs:        make(map[string]bool, len(spec.Algorithms)),
		jwksURI:     spec.JWKSURI,
		minInterval: MinRefreshInterval,
		maxInterval: MaxRefreshInterval,
		defInterval: DefaultRefreshInterval,
		kidMissGap:  KidMissInterval,
		retryMin:    15 * time.Second,
	}
	for _, a := range spec.Algorithms {
		ks.algs[a] = true
	}
	ks.maxAge.Store(int64(noMaxAge))
	ks.ctx, ks.cancel = context.WithCancel(context.Background())
	ks.table.Store(&keyTable{byKid: map[string][]*verifyKey{}})
	return ks, nil
}

// Issuer returns the issuer identifier ("iss").
func (ks *KeySet) Issuer() string { return ks.spec.Issuer }

// Spec returns the normalized spec (defaults filled in).
func (ks *KeySet) Spec() IssuerSpec { return ks.spec }

// Start fetches the keys once (bounded by ctx and a 10s timeout) and starts
// the background refresh. A failed first fetch is logged and returned for
// information only: the KeySet stays usable, retries in the background, and
// an unknown kid triggers a fetch. Start is idempotent.
func (ks *KeySet) Start(ctx context.Context) error {
	ks.mu.Lock()
	if ks.started || ks.closed {
		ks.mu.Unlock()
		return nil
	}
	ks.started = true
	ks.loopDone = make(chan struct{})
	ks.mu.Unlock()

	err := ks.refresh(ctx, true)
	go ks.loop(err)
	return err
}

// Close stops background refreshing and waits for it to end. The keys stay
// usable (no more refreshes happen).
func (ks *KeySet) Close() {
	ks.mu.Lock()
	if ks.closed {
		ks.mu.Unlock()
		return
	}
	ks.closed = true
	done := ks.loopDone
	ks.mu.Unlock()
	ks.cancel()
	if done != nil {
		<-done
	}
}

// Stats returns a snapshot of the counters.
func (ks *KeySet) Stats() KeySetStats {
	t := ks.table.Load()
	st := KeySetStats{
		Issuer:         ks.spec.Issuer,
		Keys:           len(t.all),
		LastRefresh:    t.fetched,
		Refreshes:      ks.refreshes.Load(),
		Failures:       ks.failures.Load(),
		KidMissFetches: ks.kidMissFetches.Load(),
		RateLimited:    ks.rateLimited.Load(),
	}
	if e := ks.lastErr.Load(); e != nil {
		st.LastError = *e
	}
	return st
}

func (ks *KeySet) loop(firstErr error) {
	defer close(ks.loopDone)
	failures := 0
	if firstErr != nil {
		failures = 1
	}
	next := ks.defInterval
	for {
		if failures > 0 {
			// Retry sooner after a failure, backing off up to the normal interval.
			next = ks.retryMin << min(failures-1, 6)
			if next > ks.defInterval {
				next = ks.defInterval
			}
		} else {
			next = ks.nextInterval()
		}
		timer := time.NewTimer(next)
		select {
		case <-ks.ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		if err := ks.refresh(ks.ctx, true); err != nil {
			failures++
		} else {
			failures = 0
		}
	}
}

// noMaxAge marks a JWKS response without a usable max-age.
const noMaxAge = time.Duration(-1)

// nextInterval is the time to the next background refresh, from the last
// response's max-age, bounded.
func (ks *KeySet) nextInterval() time.Duration {
	d := time.Duration(ks.maxAge.Load())
	if d < 0 {
		return ks.defInterval
	}
	return max(ks.minInterval, min(d, ks.maxInterval))
}

// refresh fetches the JWKS, joining a fetch already in flight
// (singleflight). Unless force is set, it is rate-limited to one fetch per
// kidMissGap. Waiting ends early when ctx ends; the fetch itself runs on,
// bounded by fetchTimeout, for the other waiters and the next token.
func (ks *KeySet) refresh(ctx context.Context, force bool) error {
	ks.mu.Lock()
	if ks.closed && !force {
		ks.mu.Unlock()
		return errors.New("key set closed")
	}
	c := ks.inflight
	if c == nil {
		// Only unknown-kid fetches count against the rate limit: a key
		// rotated just after a scheduled refresh must still be picked up.
		if !force && time.Since(ks.lastKidMiss) < ks.kidMissGap {
			ks.mu.Unlock()
			ks.rateLimited.Add(1)
			return errRateLimited
		}
		if !force {
			ks.kidMissFetches.Add(1)
			ks.lastKidMiss = time.Now()
		}
		c = &fetchCall{done: make(chan struct{})}
		ks.inflight = c
		ks.lastFetch = time.Now()
		go ks.runFetch(c)
	}
	ks.mu.Unlock()
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (ks *KeySet) runFetch(c *fetchCall) {
	ctx, cancel := context.WithTimeout(ks.ctx, fetchTimeout)
	defer cancel()
	c.err = ks.fetch(ctx)
	if c.err != nil {
		ks.failures.Add(1)
		msg := c.err.Error()
		ks.lastErr.Store(&msg)
		ks.log.Warn("JWKS refresh failed; keeping last good keys",
			zap.Error(c.err), zap.Int("keys", len(ks.table.Load().all)))
	} else {
		ks.refreshes.Add(1)
		ks.lastErr.Store(nil)
	}
	ks.mu.Lock()
	ks.inflight = nil
	ks.mu.Unlock()
	close(c.done)
}

func (ks *KeySet) fetch(ctx context.Context) error {
	ks.mu.Lock()
	uri := ks.jwksURI
	ks.mu.Unlock()
	discovered := false
	if uri == "" {
		var err error
		if uri, err = ks.discover(ctx); err != nil {
			return err
		}
		discovered = true
	}
	body, hdr, err := ks.get(ctx, uri)
	if err != nil {
		if ks.spec.JWKSURI == "" {
			ks.mu.Lock()
			ks.jwksURI = "" // rediscover next time: the metadata may have moved
			ks.mu.Unlock()
		}
		return fmt.Errorf("fetching JWKS %s: %w", uri, err)
	}
	t, skipped, err := parseJWKS(body)
	if err != nil {
		return fmt.Errorf("JWKS %s: %w", uri, err)
	}
	if len(skipped) > 0 {
		ks.log.Debug("JWKS keys skipped", zap.Strings("reasons", skipped))
	}
	if discovered {
		ks.mu.Lock()
		ks.jwksURI = uri
		ks.mu.Unlock()
	}
	ks.maxAge.Store(int64(parseMaxAge(hdr.Get("Cache-Control"))))
	ks.table.Store(t)
	ks.log.Debug("JWKS loaded", zap.String("jwks_uri", uri), zap.Int("keys", len(t.all)))
	return nil
}

// discover finds jwks_uri through the metadata documents of discoveryURLs.
func (ks *KeySet) discover(ctx context.Context) (string, error) {
	var errs []error
	for _, u := range discoveryURLs(ks.spec.Issuer) {
		body, _, err := ks.get(ctx, u)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		var md struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(body, &md); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
			continue
		}
		// RFC 8414 §3.3, OIDC Discovery §4.3: issuer must be identical.
		if md.Issuer != ks.spec.Issuer {
			errs = append(errs, fmt.Errorf("%s: metadata issuer %q does not match", u, md.Issuer))
			continue
		}
		if md.JWKSURI == "" {
			errs = append(errs, fmt.Errorf("%s: no jwks_uri", u))
			continue
		}
		if err := checkURL("jwks_uri", md.JWKSURI); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
			continue
		}
		return md.JWKSURI, nil
	}
	return "", fmt.Errorf("discovering jwks_uri of %s: %w", ks.spec.Issuer, errors.Join(errs...))
}

func (ks *KeySet) get(ctx context.Context, u string) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := ks.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, nil, fmt.Errorf("HTTP status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocSize+1))
	if err != nil {
		return nil, nil, err
	}
	if len(body) > maxDocSize {
		return nil, nil, fmt.Errorf("document larger than %d bytes", maxDocSize)
	}
	return body, resp.Header, nil
}

// parseJWKS turns a JWK Set into a key table, keeping only public
// signature keys of types this package verifies.
func parseJWKS(body []byte) (*keyTable, []string, error) {
	set, err := jwk.Parse(body)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing JWK set: %w", err)
	}
	t := &keyTable{byKid: map[string][]*verifyKey{}, fetched: time.Now()}
	var skipped []string
	for i := 0; i < set.Len(); i++ {
		k, _ := set.Key(i)
		if k == nil {
			continue
		}
		kid := k.KeyID()
		skip := func(why string) { skipped = append(skipped, strconv.Quote(kid)+": "+why) }
		if u := k.KeyUsage(); u != "" && u != "sig" {
			skip("use is not sig")
			continue
		}
		if ops := k.KeyOps(); len(ops) > 0 {
			ok := false
			for _, op := range ops {
				if op == jwk.KeyOpVerify {
					ok = true
				}
			}
			if !ok {
				skip("key_ops lacks verify")
				continue
			}
		}
		pub, err := jwk.PublicKeyOf(k)
		if err != nil {
			skip("not an asymmetric key")
			continue
		}
		var raw any
		if err := pub.Raw(&raw); err != nil {
			skip(err.Error())
			continue
		}
		switch rk := raw.(type) {
		case *rsa.PublicKey:
			if rk.N.BitLen() < minRSAKeyBits {
				skip("RSA key shorter than 2048 bits")
				continue
			}
		case *ecdsa.PublicKey:
			switch rk.Curve {
			case elliptic.P256(), elliptic.P384(), elliptic.P521():
			default:
				skip("unsupported curve")
				continue
			}
		case ed25519.PublicKey:
			if len(rk) != ed25519.PublicKeySize {
				skip("bad Ed25519 key")
				continue
			}
		default:
			skip(fmt.Sprintf("unsupported key type %T", raw))
			continue
		}
		var alg string
		if a := k.Algorithm(); a != nil {
			alg = a.String()
		}
		vk := &verifyKey{kid: kid, alg: alg, raw: raw}
		t.all = append(t.all, vk)
		t.byKid[kid] = append(t.byKid[kid], vk)
	}
	if len(t.all) == 0 {
		return nil, skipped, fmt.Errorf("no usable signature keys (%s)", strings.Join(skipped, "; "))
	}
	return t, skipped, nil
}

// compatible reports whether key k may verify a signature made with alg:
// the key type and curve must be the ones alg is defined for (so an RSA key
// can never be used as an HMAC secret or an EC key of the wrong curve), and
// a key that declares its "alg" is only used with that algorithm.
func (k *verifyKey) compatible(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		_, ok := k.raw.(*rsa.PublicKey)
		return ok
	case "ES256", "ES384", "ES512":
		ek, ok := k.raw.(*ecdsa.PublicKey)
		if !ok {
			return false
		}
		switch alg {
		case "ES256":
			return ek.Curve == elliptic.P256()
		case "ES384":
			return ek.Curve == elliptic.P384()
		default:
			return ek.Curve == elliptic.P521()
		}
	case "EdDSA":
		_, ok := k.raw.(ed25519.PublicKey)
		return ok
	}
	return false
}

// parseMaxAge returns the max-age of a Cache-Control value, or -1.
func parseMaxAge(cc string) time.Duration {
	for _, d := range strings.Split(cc, ",") {
		d = strings.TrimSpace(d)
		if len(d) > 8 && strings.EqualFold(d[:8], "max-age=") {
			if n, err := strconv.ParseInt(strings.Trim(d[8:], `"`), 10, 64); err == nil && n >= 0 {
				return time.Duration(n) * time.Second
			}
		}
		if strings.EqualFold(d, "no-store") || strings.EqualFold(d, "no-cache") {
			return 0 // refresh as often as allowed (minInterval)
		}
	}
	return noMaxAge
}
