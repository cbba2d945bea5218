package tokens

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

const mintIssuer = "https://mcp.example.com"

func mintNew(t testing.TB, cfg MinterConfig) *Minter {
	t.Helper()
	if cfg.Issuer == "" {
		cfg.Issuer = mintIssuer
	}
	if cfg.Key == nil {
		k, err := GenerateSigningKey("")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Key = k
	}
	m, err := NewMinter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// mintVerifyWithJWKS verifies raw as an upstream would: with the published
// JWKS only.
func mintVerifyWithJWKS(t *testing.T, m *Minter, raw string) map[string]any {
	t.Helper()
	set, err := jwk.Parse(m.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	payload, err := jws.Verify([]byte(raw), jws.WithKeySet(set, jws.WithRequireKid(true)))
	if err != nil {
		t.Fatalf("JWKS verification: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func TestMintAndVerify(t *testing.T) {
	m := mintNew(t, MinterConfig{TTL: 2 * time.Minute})
	if m.Key().Algorithm != "ES256" {
		t.Fatalf("default alg %s", m.Key().Algorithm)
	}
	raw, c, err := m.Mint(MintRequest{
		Audience: []string{"https://api.acme.example"}, Subject: "alice", ClientID: "cursor-acme",
		Tenant: "acme", Scopes: []string{"mcp:read", "mcp:write"},
	})
	if err != nil {
		t.Fatal(err)
	}
	claims := mintVerifyWithJWKS(t, m, raw)
	want := map[string]any{
		"iss": mintIssuer, "aud": "https://api.acme.example", "sub": "alice", "client_id": "cursor-acme",
		"tenant": "acme", "scope": "mcp:read mcp:write",
	}
	for k, v := range want {
		if claims[k] != v {
			t.Fatalf("%s = %v, want %v", k, claims[k], v)
		}
	}
	for _, k := range []string{"iat", "exp", "jti", "nbf"} {
		if claims[k] == nil {
			t.Fatalf("no %s", k)
		}
	}
	if exp := claims["exp"].(float64) - claims["iat"].(float64); exp != 120 {
		t.Fatalf("lifetime %v", exp)
	}
	msg, _ := jws.Parse([]byte(raw))
	h := msg.Signatures()[0].ProtectedHeaders()
	if h.KeyID() != m.KeyID() || h.Type() != ResourceTokenType || h.Algorithm().String() != "ES256" {
		t.Fatalf("header kid=%s typ=%s alg=%s", h.KeyID(), h.Type(), h.Algorithm())
	}
	got, err := m.VerifyResourceToken(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != "alice" || got.ClientID != "cursor-acme" || got.Tenant != "acme" ||
		!slices.Equal(got.Scopes, []string{"mcp:read", "mcp:write"}) || !slices.Equal(got.Audience, []string{"https://api.acme.example"}) ||
		got.ID != c.ID || got.KeyID != m.KeyID() || !got.Expiry.Equal(c.Expiry) {
		t.Fatalf("claims %+v", got)
	}
	// Unique jti.
	raw2, c2, _ := m.Mint(MintRequest{Audience: []string{"a", "b"}, Actor: "billing-mcp"})
	if c2.ID == c.ID {
		t.Fatal("jti reused")
	}
	got2, err := m.VerifyResourceToken(raw2)
	if err != nil || !slices.Equal(got2.Audience, []string{"a", "b"}) || got2.Actor != "billing-mcp" {
		t.Fatalf("multi-aud: %+v %v", got2, err)
	}
	if _, _, err := m.Mint(MintRequest{}); err == nil {
		t.Fatal("minted without audience")
	}
	// TTL is capped.
	_, c3, _ := m.Mint(MintRequest{Audience: []string{"a"}, TTL: 48 * time.Hour})
	if c3.Expiry.Sub(c3.IssuedAt) != m.MaxTTL() {
		t.Fatalf("ttl not capped: %v", c3.Expiry.Sub(c3.IssuedAt))
	}
}

func TestMintVerifyRejects(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	m := mintNew(t, MinterConfig{Now: clock, TTL: time.Minute, Leeway: 5 * time.Second})
	other := mintNew(t, MinterConfig{})
	otherIss := mintNew(t, MinterConfig{Issuer: "https://evil.example", Key: m.Key()})
	good, _, _ := m.Mint(MintRequest{Audience: []string{"x"}, Subject: "alice"})
	foreign, _, _ := other.Mint(MintRequest{Audience: []string{"x"}})
	wrongIss, _, _ := otherIss.Mint(MintRequest{Audience: []string{"x"}})
	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(bytes.Replace(payload, []byte("alice"), []byte("mallo"), 1)) + "." + parts[2]
	noneHdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt","kid":"` + m.KeyID() + `"}`))
	none := noneHdr + "." + parts[1] + "."
	jwtTyp, _ := jws.Sign(payload, jws.WithKey(jwa.ES256, m.Key().Private, jws.WithProtectedHeaders(mintHeaders(m.KeyID(), "JWT"))))
	for name, raw := range map[string]string{
		"foreign key": foreign, "foreign issuer": wrongIss, "tampered": tampered, "alg none": none,
		"typ JWT": string(jwtTyp), "garbage": "a.b.c", "empty": "", "huge": strings.Repeat("a", 9000) + ".b.c",
	} {
		if _, err := m.VerifyResourceToken(raw); !errors.Is(err, ErrInvalidResourceToken) {
			t.Errorf("%s: accepted (%v)", name, err)
		} else if strings.Contains(err.Error(), raw) && raw != "" {
			t.Errorf("%s: error quotes the token", name)
		}
	}
	if _, err := m.VerifyResourceToken(good); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(time.Minute + 6*time.Second)
	mu.Unlock()
	if _, err := m.VerifyResourceToken(good); !errors.Is(err, ErrInvalidResourceToken) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token: %v", err)
	}
}

func mintHeaders(kid, typ string) jws.Headers {
	h := jws.NewHeaders()
	_ = h.Set(jws.KeyIDKey, kid)
	_ = h.Set(jws.TypeKey, typ)
	return h
}

func mintKIDs(t *testing.T, m *Minter) []string {
	t.Helper()
	set, err := jwk.Parse(m.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for i := range set.Len() {
		k, _ := set.Key(i)
		kids = append(kids, k.KeyID())
	}
	return kids
}

func TestMintRotation(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	m := mintNew(t, MinterConfig{Now: clock, TTL: 5 * time.Minute, MaxTTL: 10 * time.Minute, Leeway: 30 * time.Second})
	oldKID := m.KeyID()
	oldTok, _, _ := m.Mint(MintRequest{Audience: []string{"x"}, TTL: 10 * time.Minute})
	nk, err := m.Rotate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if nk.KeyID == oldKID || m.KeyID() != nk.KeyID || nk.Algorithm != "ES256" {
		t.Fatal("rotation did not change the key")
	}
	newTok, _, _ := m.Mint(MintRequest{Audience: []string{"x"}})
	kids := mintKIDs(t, m)
	if !slices.Contains(kids, oldKID) || !slices.Contains(kids, nk.KeyID) || len(kids) != 2 {
		t.Fatalf("JWKS kids %v", kids)
	}
	if r := m.Retired(); len(r) != 1 || r[0].KeyID != oldKID {
		t.Fatalf("retired %+v", r)
	}
	// Both tokens verify, from the JWKS and by the minter.
	mintVerifyWithJWKS(t, m, oldTok)
	mintVerifyWithJWKS(t, m, newTok)
	if _, err := m.VerifyResourceToken(oldTok); err != nil {
		t.Fatalf("old token after rotation: %v", err)
	}
	// Restoring from persistence keeps the retired key.
	m2 := mintNew(t, MinterConfig{Now: clock, Key: nk, Retired: m.Retired(), MaxTTL: 10 * time.Minute})
	if _, err := m2.VerifyResourceToken(oldTok); err != nil {
		t.Fatalf("restored minter: %v", err)
	}
	// Once every token of the old key has expired, it leaves the JWKS.
	advance(10*time.Minute + 31*time.Second)
	kids = mintKIDs(t, m)
	if slices.Contains(kids, oldKID) || len(kids) != 1 {
		t.Fatalf("old key still published: %v", kids)
	}
	if _, err := m.VerifyResourceToken(oldTok); err == nil {
		t.Fatal("old key still verifies")
	}
	if len(m.Retired()) != 0 {
		t.Fatal("retired list not pruned")
	}
}

func TestMintJWKSPublicOnly(t *testing.T) {
	for _, alg := range []string{"ES256", "ES384", "RS256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			k, err := GenerateSigningKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			m := mintNew(t, MinterConfig{Key: k})
			if _, err := m.Rotate(nil); err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Keys []map[string]any `json:"keys"`
			}
			if err := json.Unmarshal(m.JWKS(), &doc); err != nil {
				t.Fatal(err)
			}
			if len(doc.Keys) != 2 {
				t.Fatalf("%d keys", len(doc.Keys))
			}
			for _, key := range doc.Keys {
				for _, priv := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
					if _, ok := key[priv]; ok {
						t.Fatalf("JWKS has private member %q", priv)
					}
				}
				if key["alg"] != alg || key["use"] != "sig" || key["kid"] == "" {
					t.Fatalf("key %v", key)
				}
			}
			raw, _, err := m.Mint(MintRequest{Audience: []string{"x"}})
			if err != nil {
				t.Fatal(err)
			}
			mintVerifyWithJWKS(t, m, raw)
			if _, err := m.VerifyResourceToken(raw); err != nil {
				t.Fatal(err)
			}
			if s := fmt.Sprintf("%v %+v %#v %s", k, k, k, k); strings.Contains(s, "D:") || !strings.Contains(s, k.KeyID) {
				t.Fatalf("key String: %s", s)
			}
		})
	}
}

func TestMintPEM(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	ecDER, _ := x509.MarshalECPrivateKey(ec)
	pk8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	ecParams := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}})
	cases := map[string]struct {
		pem []byte
		alg string
	}{
		"pkcs8 ec":      {pk8(ec), "ES256"},
		"sec1 ec":       {append(ecParams, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})...), "ES256"},
		"pkcs8 rsa":     {pk8(rk), "RS256"},
		"pkcs1 rsa":     {pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}), "RS256"},
		"pkcs8 ed25519": {pk8(ed), "EdDSA"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			k, err := ParseSigningKeyPEM(tc.pem)
			if err != nil {
				t.Fatal(err)
			}
			if k.Algorithm != tc.alg {
				t.Fatalf("alg %s", k.Algorithm)
			}
			out, err := k.MarshalPEM()
			if err != nil {
				t.Fatal(err)
			}
			k2, err := ParseSigningKeyPEM(out)
			if err != nil || k2.KeyID != k.KeyID || k2.Algorithm != k.Algorithm {
				t.Fatalf("round trip: %v", err)
			}
			m := mintNew(t, MinterConfig{Key: k2})
			raw, _, _ := m.Mint(MintRequest{Audience: []string{"x"}})
			if _, err := m.VerifyResourceToken(raw); err != nil {
				t.Fatal(err)
			}
		})
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	der, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	for name, bad := range map[string][]byte{
		"no pem":     []byte("hello"),
		"public key": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
		"garbage":    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("xx")}),
		"rsa 1024":   pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(small)}),
	} {
		if _, err := ParseSigningKeyPEM(bad); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	// A generated key survives storage as PEM with the same kid.
	g, _ := GenerateSigningKey("")
	b, _ := g.MarshalPEM()
	g2, _ := ParseSigningKeyPEM(b)
	if g2.KeyID != g.KeyID {
		t.Fatal("kid changed through PEM")
	}
}

func BenchmarkMintES256(b *testing.B) {
	m := mintNew(b, MinterConfig{})
	req := MintRequest{Audience: []string{"https://api.acme.example"}, Subject: "alice", ClientID: "cursor", Tenant: "acme", Scopes: []string{"mcp:read"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := m.Mint(req); err != nil {
			b.Fatal(err)
		}
	}
}
