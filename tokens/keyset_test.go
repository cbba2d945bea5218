package tokens

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

func TestIssuerSpecValidation(t *testing.T) {
	bad := []IssuerSpec{
		{},
		{Issuer: "http://auth.example.com"},
		{Issuer: "ftp://auth.example.com"},
		{Issuer: "/relative"},
		{Issuer: "https://auth.example.com?x=1"},
		{Issuer: "https://auth.example.com", JWKSURI: "http://auth.example.com/jwks"},
		{Issuer: "https://auth.example.com", Algorithms: []string{"none"}},
		{Issuer: "https://auth.example.com", Algorithms: []string{"RS256", "HS256"}},
		{Issuer: "https://auth.example.com", Algorithms: []string{"hs512"}},
		{Issuer: "https://auth.example.com", Algorithms: []string{"RS1"}},
		{Issuer: "https://auth.example.com", Leeway: -time.Second},
	}
	for _, s := range bad {
		if _, err := NewKeySet(s, nil, nil); err == nil {
			t.Errorf("accepted %+v", s)
		}
	}
	for _, iss := range []string{"https://auth.example.com", "http://127.0.0.1:8080/realms/x", "http://localhost:9000", "http://[::1]:1"} {
		ks, err := NewKeySet(IssuerSpec{Issuer: iss}, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", iss, err)
		}
		sp := ks.Spec()
		if strings.Join(sp.Algorithms, " ") != "RS256 RS384 RS512 PS256 ES256 ES384 EdDSA" || sp.Leeway != 30*time.Second || sp.GroupsClaim != "groups" {
			t.Fatalf("defaults: %+v", sp)
		}
	}
}

func TestDiscoveryURLs(t *testing.T) {
	got := discoveryURLs("https://as.example/tenant1")
	want := []string{
		"https://as.example/.well-known/oauth-authorization-server/tenant1",
		"https://as.example/.well-known/openid-configuration/tenant1",
		"https://as.example/tenant1/.well-known/openid-configuration",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("got %v", got)
	}
	got = discoveryURLs("https://as.example/")
	want = []string{"https://as.example/.well-known/oauth-authorization-server", "https://as.example/.well-known/openid-configuration"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("got %v", got)
	}
}

func TestDiscovery(t *testing.T) {
	k := newTestKey(t, "k1", jwa.ES256, 0)
	cases := []struct {
		name         string
		path         string
		rfc8414      bool
		oidc         bool
		wantMetaPath string
	}{
		{"RFC 8414 with path insertion", "/tenant1", true, true, "/.well-known/oauth-authorization-server/tenant1"},
		{"OIDC appending fallback for issuer with path", "/tenant1", false, true, "/tenant1/.well-known/openid-configuration"},
		{"RFC 8414 without path", "", true, true, "/.well-known/oauth-authorization-server"},
		{"OIDC fallback without path", "", false, true, "/.well-known/openid-configuration"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			iss := newTestIssuer(t, c.path, k)
			iss.rfc8414.Store(c.rfc8414)
			iss.oidc.Store(c.oidc)
			ks := iss.keySet(t, nil)
			if n := iss.metaCount(c.wantMetaPath); n != 1 {
				t.Fatalf("metadata %s fetched %d times", c.wantMetaPath, n)
			}
			if iss.jwksHits.Load() != 1 || ks.Stats().Keys != 1 {
				t.Fatalf("jwks hits %d, stats %+v", iss.jwksHits.Load(), ks.Stats())
			}
			v := NewValidator(nil, nil)
			if _, err := v.Validate(context.Background(), k.sign(t, iss.claims(audA, nil)), &Requirements{Issuers: []*KeySet{ks}, Audience: audA}); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("metadata with another issuer is refused", func(t *testing.T) {
		iss := newTestIssuer(t, "", k)
		iss.badIssuer.Store(true)
		spec := IssuerSpec{Issuer: iss.issuer}
		ks, _ := NewKeySet(spec, iss.srv.Client(), nil)
		defer ks.Close()
		err := ks.Start(context.Background())
		if err == nil || !strings.Contains(err.Error(), "does not match") {
			t.Fatalf("start: %v", err)
		}
		if iss.jwksHits.Load() != 0 {
			t.Fatal("JWKS fetched from untrusted metadata")
		}
		v := NewValidator(nil, nil)
		_, err = v.Validate(context.Background(), k.sign(t, iss.claims(audA, nil)), &Requirements{Issuers: []*KeySet{ks}, Audience: audA})
		mustErr(t, err, 401, CodeInvalidToken)
	})
	t.Run("configured jwks_uri skips discovery", func(t *testing.T) {
		iss := newTestIssuer(t, "", k)
		iss.keySet(t, func(s *IssuerSpec) { s.JWKSURI = iss.srv.URL + "/keys/jwks.json" })
		if iss.metaCount("/.well-known/oauth-authorization-server") != 0 || iss.jwksHits.Load() != 1 {
			t.Fatal("discovery used despite jwks_uri")
		}
	})
}

func TestKeyRotation(t *testing.T) {
	k1 := newTestKey(t, "2024-01", jwa.RS256, 0)
	k2 := newTestKey(t, "2024-02", jwa.RS256, 1)
	iss := newTestIssuer(t, "/oauth2", k1)
	ks := iss.keySet(t, nil)
	ks.kidMissGap = 100 * time.Millisecond
	v := NewValidator(nil, nil) // no cache: every Validate verifies
	req := &Requirements{Issuers: []*KeySet{ks}, Audience: audA}
	ctx := context.Background()
	old := k1.sign(t, iss.claims(audA, nil))
	if _, err := v.Validate(ctx, old, req); err != nil {
		t.Fatal(err)
	}
	// The issuer rotates: publishes k2 next to k1 and signs with k2.
	iss.setKeys(k1, k2)
	time.Sleep(150 * time.Millisecond)
	fresh := k2.sign(t, iss.claims(audA, nil))
	if _, err := v.Validate(ctx, fresh, req); err != nil {
		t.Fatalf("new kid: %v", err)
	}
	if st := ks.Stats(); st.KidMissFetches != 1 || st.Keys != 2 {
		t.Fatalf("stats %+v", st)
	}
	// Still-valid tokens of the old key keep validating while it is listed.
	for _, tok := range []string{old, k1.sign(t, iss.claims(audA, nil)), fresh} {
		if _, err := v.Validate(ctx, tok, req); err != nil {
			t.Fatal(err)
		}
	}
	hits := iss.jwksHits.Load()
	// k1 is withdrawn; after the next refresh its tokens are refused.
	iss.setKeys(k2)
	if err := ks.refresh(ctx, true); err != nil {
		t.Fatal(err)
	}
	_, err := v.Validate(ctx, old, req)
	mustErr(t, err, 401, CodeInvalidToken)
	if _, err := v.Validate(ctx, fresh, req); err != nil {
		t.Fatal(err)
	}
	if iss.jwksHits.Load() > hits+2 {
		t.Fatalf("too many fetches: %d", iss.jwksHits.Load()-hits)
	}
}

func TestJWKSDownKeepsKeys(t *testing.T) {
	k := newTestKey(t, "k", jwa.ES256, 0)
	iss := newTestIssuer(t, "", k)
	ks := iss.keySet(t, nil)
	ks.kidMissGap = 0
	v := NewValidator(nil, nil)
	req := &Requirements{Issuers: []*KeySet{ks}, Audience: audA}
	ctx := context.Background()

	iss.down.Store(true) // 503
	if err := ks.refresh(ctx, true); err == nil {
		t.Fatal("refresh against a 503 succeeded")
	}
	if _, err := v.Validate(ctx, k.sign(t, iss.claims(audA, nil)), req); err != nil {
		t.Fatalf("503: %v", err)
	}
	iss.srv.Close() // stopped entirely
	if err := ks.refresh(ctx, true); err == nil {
		t.Fatal("refresh against a stopped server succeeded")
	}
	if _, err := v.Validate(ctx, k.sign(t, iss.claims(audA, nil)), req); err != nil {
		t.Fatalf("stopped: %v", err)
	}
	// An unknown kid cannot be resolved: refused, the cause kept for logs.
	_, err := v.Validate(ctx, newTestKey(t, "new", jwa.ES256, 0).sign(t, iss.claims(audA, nil)), req)
	if e := mustErr(t, err, 401, CodeInvalidToken); e.Unwrap() == nil {
		t.Fatal("no cause")
	}
	st := ks.Stats()
	if st.Failures < 3 || st.Keys != 1 || st.LastError == "" {
		t.Fatalf("stats %+v", st)
	}
}

func TestKidMissRateLimit(t *testing.T) {
	k := newTestKey(t, "k", jwa.ES256, 0)
	iss := newTestIssuer(t, "", k)
	ks := iss.keySet(t, nil)
	ks.kidMissGap = 500 * time.Millisecond
	time.Sleep(600 * time.Millisecond) // let the startup fetch fall out of the window
	iss.jwksDelay.Store(int64(100 * time.Millisecond))
	v := NewValidator(nil, nil)
	req := &Requirements{Issuers: []*KeySet{ks}, Audience: audA}
	before := iss.jwksHits.Load()

	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			tok := joinDots(b64json(map[string]any{"alg": "ES256", "kid": fmt.Sprintf("flood-%d", i)}), b64json(iss.claims(audA, nil)), "AAAA")
			_, err := v.Validate(context.Background(), tok, req)
			mustErr(t, err, 401, CodeInvalidToken)
		}(i)
	}
	wg.Wait()
	for i := 0; i < 20; i++ { // a sequential flood within the window
		tok := joinDots(b64json(map[string]any{"alg": "ES256", "kid": "seq"}), b64json(iss.claims(audA, nil)), "AAAA")
		_, _ = v.Validate(context.Background(), tok, req)
	}
	if n := iss.jwksHits.Load() - before; n != 1 {
		t.Fatalf("%d JWKS fetches for the flood, want 1", n)
	}
	st := ks.Stats()
	if st.KidMissFetches != 1 || st.RateLimited < 20 {
		t.Fatalf("stats %+v", st)
	}
	// After the window, one more fetch is allowed.
	time.Sleep(600 * time.Millisecond)
	tok := joinDots(b64json(map[string]any{"alg": "ES256", "kid": "later"}), b64json(iss.claims(audA, nil)), "AAAA")
	_, _ = v.Validate(context.Background(), tok, req)
	if n := iss.jwksHits.Load() - before; n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
	// A waiter whose request ends stops waiting; the fetch goes on.
	time.Sleep(600 * time.Millisecond)
	iss.jwksDelay.Store(int64(300 * time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := v.Validate(ctx, tok, req)
	mustErr(t, err, 401, CodeInvalidToken)
	if time.Since(start) > 200*time.Millisecond || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waited %v: %v", time.Since(start), err)
	}
}

func TestBackgroundRefresh(t *testing.T) {
	k := newTestKey(t, "k", jwa.ES256, 0)
	iss := newTestIssuer(t, "", k)
	iss.maxAge.Store(0) // max-age=0: as often as the lower bound allows
	spec := IssuerSpec{Issuer: iss.issuer}
	ks, _ := NewKeySet(spec, iss.srv.Client(), nil)
	ks.minInterval, ks.retryMin = 50*time.Millisecond, 20*time.Millisecond
	if err := ks.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	if n := ks.Stats().Refreshes; n < 4 {
		t.Fatalf("%d refreshes", n)
	}
	// Failures are retried with backoff; keys are kept.
	iss.down.Store(true)
	time.Sleep(200 * time.Millisecond)
	if st := ks.Stats(); st.Failures < 2 || st.Keys != 1 {
		t.Fatalf("%+v", st)
	}
	iss.down.Store(false)
	ks.Close()
	n := iss.jwksHits.Load()
	time.Sleep(150 * time.Millisecond)
	if iss.jwksHits.Load() != n {
		t.Fatal("refreshing after Close")
	}
	if d := parseMaxAge("public, max-age=7200"); d != 2*time.Hour {
		t.Fatal(d)
	}
	ks2, _ := NewKeySet(spec, nil, nil)
	ks2.maxAge.Store(int64(2 * time.Hour))
	if ks2.nextInterval() != time.Hour {
		t.Fatal("max-age not bounded by 1h")
	}
	ks2.maxAge.Store(int64(time.Second))
	if ks2.nextInterval() != time.Minute {
		t.Fatal("max-age not bounded by 1m")
	}
	ks2.maxAge.Store(-1)
	if ks2.nextInterval() != 15*time.Minute {
		t.Fatal("default interval")
	}
}

func TestParseJWKSFiltersKeys(t *testing.T) {
	good := newTestKey(t, "good", jwa.RS256, 0)
	enc := newTestKey(t, "enc", jwa.RS256, 0)
	_ = enc.pub.Set(jwk.KeyUsageKey, "enc")
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallJWK, _ := jwk.FromRaw(&small.PublicKey)
	_ = smallJWK.Set(jwk.KeyIDKey, "small")
	oct, _ := jwk.FromRaw([]byte("secretsecretsecretsecret"))
	_ = oct.Set(jwk.KeyIDKey, "oct")
	set := jwk.NewSet()
	for _, k := range []jwk.Key{good.pub, enc.pub, smallJWK, oct} {
		_ = set.AddKey(k)
	}
	b, _ := json.Marshal(set)
	tab, skipped, err := parseJWKS(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.all) != 1 || tab.all[0].kid != "good" || len(skipped) != 3 {
		t.Fatalf("%d keys, skipped %v", len(tab.all), skipped)
	}
	set2 := jwk.NewSet()
	_ = set2.AddKey(oct)
	b, _ = json.Marshal(set2)
	if _, _, err := parseJWKS(b); err == nil {
		t.Fatal("a JWKS with only a symmetric key was accepted")
	}
}

func TestKeyAlgPinning(t *testing.T) {
	// A JWK that declares "alg": PS256 cannot verify RS256 signatures.
	k := newTestKey(t, "pinned", jwa.RS256, 0)
	_ = k.pub.Set(jwk.AlgorithmKey, jwa.PS256)
	iss := newTestIssuer(t, "", k)
	ks := iss.keySet(t, nil)
	v := NewValidator(nil, nil)
	_, err := v.Validate(context.Background(), k.sign(t, iss.claims(audA, nil)), &Requirements{Issuers: []*KeySet{ks}, Audience: audA})
	if e := mustErr(t, err, 401, CodeInvalidToken); !strings.Contains(e.Description, "does not match") {
		t.Fatal(e)
	}
}

func TestCurveMustMatchAlgorithm(t *testing.T) {
	// A P-384 key published under a kid; a token claiming ES256 with that
	// kid must not be verified with it (jwx's ECDSA verifier alone does
	// not check the curve against the algorithm).
	k384 := newTestKey(t, "ec-384", jwa.ES384, 0)
	iss := newTestIssuer(t, "", k384)
	ks := iss.keySet(t, func(s *IssuerSpec) { s.Algorithms = []string{"ES256", "ES384"} })
	v := NewValidator(nil, nil)
	req := &Requirements{Issuers: []*KeySet{ks}, Audience: audA}
	good := k384.sign(t, iss.claims(audA, nil))
	if _, err := v.Validate(context.Background(), good, req); err != nil {
		t.Fatal(err)
	}
	p := strings.Split(good, ".")
	forged := joinDots(b64json(map[string]any{"alg": "ES256", "kid": "ec-384"}), p[1], p[2])
	_, err := v.Validate(context.Background(), forged, req)
	if e := mustErr(t, err, 401, CodeInvalidToken); !strings.Contains(e.Description, "does not match") {
		t.Fatal(e)
	}
}
