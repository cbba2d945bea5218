package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// testKey is a private signing key with its kid and algorithm.
type testKey struct {
	kid  string
	alg  jwa.SignatureAlgorithm
	priv jwk.Key
	pub  jwk.Key
	raw  any // the raw private key
}

var (
	rsaOnce sync.Once
	rsaPool []*rsa.PrivateKey
)

// rsaKey returns one of a few pre-generated 2048-bit keys (generation is slow).
func rsaKey(t testing.TB, i int) *rsa.PrivateKey {
	rsaOnce.Do(func() {
		for j := 0; j < 4; j++ {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaPool = append(rsaPool, k)
		}
	})
	return rsaPool[i%len(rsaPool)]
}

func newTestKey(t testing.TB, kid string, alg jwa.SignatureAlgorithm, n int) *testKey {
	t.Helper()
	var raw any
	switch alg {
	case jwa.RS256, jwa.RS384, jwa.RS512, jwa.PS256:
		raw = rsaKey(t, n)
	case jwa.ES256:
		raw, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jwa.ES384:
		raw, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case jwa.EdDSA:
		_, raw, _ = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("unsupported alg %s", alg)
	}
	priv, err := jwk.FromRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	_ = priv.Set(jwk.KeyIDKey, kid)
	pub, err := jwk.PublicKeyOf(priv)
	if err != nil {
		t.Fatal(err)
	}
	_ = pub.Set(jwk.KeyUsageKey, "sig")
	return &testKey{kid: kid, alg: alg, priv: priv, pub: pub, raw: raw}
}

// sign makes a compact JWS of claims with k (kid in the header).
func (k *testKey) sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, k.kid)
	_ = hdr.Set(jws.TypeKey, "at+jwt")
	out, err := jws.Sign(payload, jws.WithKey(k.alg, k.priv, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// testIssuer is an authorization server on 127.0.0.1 serving discovery
// metadata and a JWKS.
type testIssuer struct {
	t      testing.TB
	srv    *httptest.Server
	issuer string
	path   string // issuer path component, e.g. "/tenant1" or ""

	mu   sync.Mutex
	keys []*testKey // published in the JWKS

	rfc8414   atomic.Bool // serve RFC 8414 metadata
	oidc      atomic.Bool // serve OIDC discovery (insertion + appending)
	down      atomic.Bool // JWKS endpoint answers 503
	maxAge    atomic.Int64
	jwksHits  atomic.Int64
	metaHits  sync.Map // path -> *atomic.Int64
	jwksDelay atomic.Int64
	badIssuer atomic.Bool // metadata claims another issuer
}

func newTestIssuer(t testing.TB, path string, keys ...*testKey) *testIssuer {
	ti := &testIssuer{t: t, path: path, keys: keys}
	ti.rfc8414.Store(true)
	ti.oidc.Store(true)
	ti.maxAge.Store(-1)
	mux := http.NewServeMux()
	meta := func(w http.ResponseWriter, r *http.Request) {
		c, _ := ti.metaHits.LoadOrStore(r.URL.Path, new(atomic.Int64))
		c.(*atomic.Int64).Add(1)
		iss := ti.issuer
		if ti.badIssuer.Load() {
			iss = "https://evil.example"
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                 iss,
			"jwks_uri":               ti.srv.URL + "/keys/jwks.json",
			"token_endpoint":         ti.issuer + "/token",
			"authorization_endpoint": ti.issuer + "/authorize",
		})
	}
	mux.HandleFunc("/.well-known/oauth-authorization-server"+path, func(w http.ResponseWriter, r *http.Request) {
		if !ti.rfc8414.Load() {
			http.NotFound(w, r)
			return
		}
		meta(w, r)
	})
	oidcHandler := func(w http.ResponseWriter, r *http.Request) {
		if !ti.oidc.Load() {
			http.NotFound(w, r)
			return
		}
		meta(w, r)
	}
	if path == "" {
		mux.HandleFunc("/.well-known/openid-configuration", oidcHandler)
	} else {
		// Only the appending form (OIDC Discovery §4) for issuers with a path,
		// so the test proves that form is tried.
		mux.HandleFunc(path+"/.well-known/openid-configuration", oidcHandler)
	}
	mux.HandleFunc("/keys/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		ti.jwksHits.Add(1)
		if d := ti.jwksDelay.Load(); d > 0 {
			time.Sleep(time.Duration(d))
		}
		if ti.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if ma := ti.maxAge.Load(); ma >= 0 {
			w.Header().Set("Cache-Control", "max-age="+itoa(ma))
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(ti.jwks())
	})
	ti.srv = httptest.NewServer(mux)
	t.Cleanup(ti.srv.Close)
	ti.issuer = ti.srv.URL + path
	return ti
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func (ti *testIssuer) jwks() []byte {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	set := jwk.NewSet()
	for _, k := range ti.keys {
		_ = set.AddKey(k.pub)
	}
	b, err := json.Marshal(set)
	if err != nil {
		panic(err)
	}
	return b
}

func (ti *testIssuer) setKeys(keys ...*testKey) {
	ti.mu.Lock()
	ti.keys = keys
	ti.mu.Unlock()
}

func (ti *testIssuer) metaCount(path string) int64 {
	c, ok := ti.metaHits.Load(path)
	if !ok {
		return 0
	}
	return c.(*atomic.Int64).Load()
}

// keySet returns a started KeySet for ti (discovery unless jwksURI is set).
func (ti *testIssuer) keySet(t testing.TB, mod func(*IssuerSpec)) *KeySet {
	t.Helper()
	spec := IssuerSpec{Issuer: ti.issuer}
	if mod != nil {
		mod(&spec)
	}
	log := zap.NewNop()
	if _, isBench := t.(*testing.B); !isBench {
		log = zaptest.NewLogger(t)
	}
	ks, err := NewKeySet(spec, ti.srv.Client(), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ks.Close)
	if err := ks.Start(context.Background()); err != nil {
		t.Logf("start: %v", err)
	}
	return ks
}

// claims returns a valid claim set for aud.
func (ti *testIssuer) claims(aud string, extra map[string]any) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss":       ti.issuer,
		"sub":       "user-1",
		"aud":       aud,
		"exp":       now.Add(time.Hour).Unix(),
		"iat":       now.Unix(),
		"nbf":       now.Add(-time.Minute).Unix(),
		"client_id": "agent-1",
		"scope":     "mcp:read mcp:write",
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// b64json encodes v as a base64url JSON segment.
func b64json(v any) string {
	b, _ := json.Marshal(v)
	return b64.EncodeToString(b)
}

func mustErr(t testing.TB, err error, status int, code string) *Error {
	t.Helper()
	e, ok := err.(*Error)
	if !ok {
		t.Fatalf("want *Error %d %s, got %T %v", status, code, err, err)
	}
	if e.Status != status || e.Code != code {
		t.Fatalf("want %d %s, got %d %s (%s)", status, code, e.Status, e.Code, e.Description)
	}
	return e
}

func joinDots(parts ...string) string { return strings.Join(parts, ".") }
