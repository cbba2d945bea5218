package tokens

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"go.uber.org/zap/zaptest"
)

const (
	audA = "https://mcp.example.com/acme/billing/mcp"
	audB = "https://mcp.example.com/globex/billing/mcp"
)

type fixture struct {
	rsa, ec, ed, rsa2 *testKey
	iss, other        *testIssuer
	ks, otherKS       *KeySet
	reqA, reqB        *Requirements
	v                 *Validator
	cache             *Cache
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{
		rsa:  newTestKey(t, "rsa-1", jwa.RS256, 0),
		ec:   newTestKey(t, "ec-1", jwa.ES256, 0),
		ed:   newTestKey(t, "ed-1", jwa.EdDSA, 0),
		rsa2: newTestKey(t, "other-rsa", jwa.RS256, 1),
	}
	f.iss = newTestIssuer(t, "", f.rsa, f.ec, f.ed)
	f.other = newTestIssuer(t, "/realms/globex", f.rsa2)
	f.ks = f.iss.keySet(t, func(s *IssuerSpec) { s.TenantClaim = "tenant" })
	f.otherKS = f.other.keySet(t, nil)
	// Server A trusts only the main issuer; server B trusts both.
	f.reqA = &Requirements{Issuers: []*KeySet{f.ks}, Audience: audA, Tenant: "acme"}
	f.reqB = &Requirements{Issuers: []*KeySet{f.ks, f.otherKS}, Audience: audB, Tenant: "globex"}
	var err error
	if f.cache, err = NewCache(1 << 20); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.cache.Close)
	f.v = NewValidator(f.cache, zaptest.NewLogger(t))
	return f
}

func rsaPublicPEM(t *testing.T, k *testKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(&rsaKey(t, 0).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func hs256(hdr, claims map[string]any, secret []byte) string {
	in := b64json(hdr) + "." + b64json(claims)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(in))
	return in + "." + b64.EncodeToString(m.Sum(nil))
}

func TestValidateBadTokens(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	good := f.rsa.sign(t, f.iss.claims(audA, nil))
	parts := strings.Split(good, ".")
	tamperedPayload := b64json(f.iss.claims(audA, map[string]any{"sub": "admin"}))
	es384 := newTestKey(t, "ec-1", jwa.ES384, 0) // same kid as the ES256 key, other curve

	cases := []struct {
		name  string
		token string
		req   *Requirements
		desc  string // substring of the description
	}{
		{name: "expired", token: f.rsa.sign(t, f.iss.claims(audA, map[string]any{"exp": now.Add(-time.Minute).Unix()})), desc: "expired"},
		{name: "expired within leeway is fine, beyond is not", token: f.rsa.sign(t, f.iss.claims(audA, map[string]any{"exp": now.Add(-31 * time.Second).Unix()})), desc: "expired"},
		{name: "future nbf", token: f.rsa.sign(t, f.iss.claims(audA, map[string]any{"nbf": now.Add(5 * time.Minute).Unix()})), desc: "not yet valid"},
		{name: "future iat", token: f.rsa.sign(t, f.iss.claims(audA, map[string]any{"iat": now.Add(5 * time.Minute).Unix()})), desc: "issued in the future"},
		{name: "missing exp", token: f.rsa.sign(t, f.iss.claims(audA, map[string]any{"exp": nil})), desc: "no expiry"},
		{name: "exp not a number", token: f.rsa.sign(t, f.iss.claims(audA, map[string]any{"exp": "tomorrow"})), desc: "malformed claim"},
		{name: "wrong iss", token: f.rsa.sign(t, f.iss.claims(audA, map[string]any{"iss": "https://evil.example"})), desc: "issuer"},
		{name: "no iss", token: f.rsa.sign(t, f.iss.claims(audA, map[string]any{"iss": nil})), desc: "issuer"},
		{name: "other tenant's aud", token: f.rsa.sign(t, f.iss.claims(audB, nil)), desc: "audience"},
		{name: "aud prefix is not aud", token: f.rsa.sign(t, f.iss.claims("https://mcp.example.com/acme", nil)), desc: "audience"},
		{name: "aud list without us", token: f.rsa.sign(t, f.iss.claims("", map[string]any{"aud": []string{audB, "x"}})), desc: "audience"},
		{name: "no aud", token: f.rsa.sign(t, f.iss.claims(audA, map[string]any{"aud": nil})), desc: "no audience"},
		{name: "empty aud list", token: f.rsa.sign(t, f.iss.claims(audA, map[string]any{"aud": []string{}})), desc: "no audience"},
		{name: "tenant claim mismatch", token: f.rsa.sign(t, f.iss.claims(audA, map[string]any{"tenant": "globex"})), desc: "another tenant"},
		{name: "alg none", token: joinDots(b64json(map[string]any{"alg": "none", "kid": "rsa-1"}), b64json(f.iss.claims(audA, nil)), ""), desc: "malformed"},
		{name: "alg none with junk signature", token: joinDots(b64json(map[string]any{"alg": "none"}), b64json(f.iss.claims(audA, nil)), "AAAA"), desc: "algorithm"},
		{name: "alg None", token: joinDots(b64json(map[string]any{"alg": "None"}), b64json(f.iss.claims(audA, nil)), "AAAA"), desc: "algorithm"},
		{name: "HS256 with RSA public key PEM (algorithm confusion)", token: hs256(map[string]any{"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}, f.iss.claims(audA, nil), rsaPublicPEM(t, f.rsa)), desc: "algorithm"},
		{name: "ES256 header on the RSA kid", token: joinDots(b64json(map[string]any{"alg": "ES256", "kid": "rsa-1"}), parts[1], parts[2]), desc: "does not match"},
		{name: "ES384 signed, ES384 not in allow-list", token: es384.sign(t, f.iss.claims(audA, nil)), desc: "algorithm"},
		{name: "unknown kid", token: newTestKey(t, "ghost", jwa.RS256, 2).sign(t, f.iss.claims(audA, nil)), desc: "key not found"},
		{name: "no kid, no key verifies", token: joinDots(b64json(map[string]any{"alg": "RS256"}), parts[1], parts[2][:len(parts[2])-4]+"AAAA"), desc: "signature"},
		{name: "truncated", token: good[:len(good)-10], desc: ""},
		{name: "two segments", token: parts[0] + "." + parts[1], desc: "malformed"},
		{name: "four segments", token: good + ".x", desc: "malformed"},
		{name: "JWE-like five segments", token: "a.b.c.d.e", desc: "malformed"},
		{name: "garbage", token: "not-a-jwt", desc: "malformed"},
		{name: "bad base64", token: "!!!." + parts[1] + "." + parts[2], desc: "malformed"},
		{name: "payload not an object", token: joinDots(parts[0], b64json([]int{1}), parts[2]), desc: "malformed"},
		{name: "wrong signature (tampered payload)", token: joinDots(parts[0], tamperedPayload, parts[2]), desc: "signature"},
		{name: "signature of another key", token: joinDots(parts[0], parts[1], strings.Split(f.rsa2.sign(t, f.iss.claims(audA, nil)), ".")[2]), desc: "signature"},
		{name: "crit header", token: joinDots(b64json(map[string]any{"alg": "RS256", "kid": "rsa-1", "crit": []string{"exp"}}), parts[1], parts[2]), desc: "critical"},
		{name: "b64 false", token: joinDots(b64json(map[string]any{"alg": "RS256", "kid": "rsa-1", "b64": false}), parts[1], parts[2]), desc: "critical"},
		{name: "oversized", token: good + strings.Repeat("A", MaxTokenSize), desc: "too large"},
		{name: "other issuer, configured for server B only", token: f.rsa2.sign(t, f.other.claims(audA, nil)), desc: "issuer"},
		{name: "other issuer's token claiming our iss", token: f.rsa2.sign(t, f.iss.claims(audA, nil)), desc: "key not found"},
		{name: "scope of wrong type", token: f.rsa.sign(t, f.iss.claims(audA, map[string]any{"scope": 7})), desc: "malformed claim"},
		{name: "empty audience requirement", token: good, req: &Requirements{Issuers: f.reqA.Issuers}, desc: "resource"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := c.req
			if req == nil {
				req = f.reqA
			}
			id, err := f.v.Validate(context.Background(), c.token, req)
			if id != nil {
				t.Fatalf("accepted: %+v", id)
			}
			e := mustErr(t, err, http.StatusUnauthorized, CodeInvalidToken)
			if !strings.Contains(e.Description, c.desc) {
				t.Fatalf("description %q lacks %q", e.Description, c.desc)
			}
			if strings.Contains(e.Error(), c.token) {
				t.Fatal("error echoes the token")
			}
		})
	}
	// The control token is fine, and the others-issuer token is fine at B.
	if _, err := f.v.Validate(context.Background(), good, f.reqA); err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Validate(context.Background(), f.rsa2.sign(t, f.other.claims(audB, nil)), f.reqB); err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Validate(context.Background(), "", f.reqA); !errors.Is(err, ErrNoToken) {
		t.Fatalf("empty token: %v", err)
	}
}

func TestValidateGoodTokens(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	cases := []struct {
		name   string
		key    *testKey
		extra  map[string]any
		check  func(t *testing.T, id *Identity)
		server *Requirements
	}{
		{name: "RS256", key: f.rsa, check: func(t *testing.T, id *Identity) {
			if id.Subject != "user-1" || id.Agent != "agent-1" || id.Issuer != f.iss.issuer {
				t.Fatalf("%+v", id)
			}
			if strings.Join(id.Scopes, " ") != "mcp:read mcp:write" || len(id.Audience) != 1 || id.Audience[0] != audA {
				t.Fatalf("%+v", id)
			}
			if len(id.TokenHash) != 12 || id.Expiry.Before(now) {
				t.Fatalf("%+v", id)
			}
		}},
		{name: "ES256", key: f.ec},
		{name: "EdDSA", key: f.ed},
		{name: "scp array", key: f.rsa, extra: map[string]any{"scope": nil, "scp": []string{"a", "b"}}, check: func(t *testing.T, id *Identity) {
			if strings.Join(id.Scopes, ",") != "a,b" {
				t.Fatal(id.Scopes)
			}
		}},
		{name: "scp string", key: f.rsa, extra: map[string]any{"scope": nil, "scp": "x y"}, check: func(t *testing.T, id *Identity) {
			if strings.Join(id.Scopes, ",") != "x,y" {
				t.Fatal(id.Scopes)
			}
		}},
		{name: "scope wins over scp", key: f.rsa, extra: map[string]any{"scope": "s", "scp": []string{"p"}}, check: func(t *testing.T, id *Identity) {
			if strings.Join(id.Scopes, ",") != "s" {
				t.Fatal(id.Scopes)
			}
		}},
		{name: "agent from azp", key: f.rsa, extra: map[string]any{"client_id": nil, "azp": "cursor"}, check: func(t *testing.T, id *Identity) {
			if id.Agent != "cursor" {
				t.Fatal(id.Agent)
			}
		}},
		{name: "client_id wins over azp", key: f.rsa, extra: map[string]any{"azp": "cursor"}, check: func(t *testing.T, id *Identity) {
			if id.Agent != "agent-1" {
				t.Fatal(id.Agent)
			}
		}},
		{name: "aud list, groups, tenant, custom claims", key: f.rsa, extra: map[string]any{
			"aud": []string{"https://other", audA}, "groups": []string{"internal-tools", "x"}, "tenant": "acme",
			"department": "finance", "exp": float64(now.Add(time.Hour).UnixMilli()) / 1000,
		}, check: func(t *testing.T, id *Identity) {
			if id.Tenant != "acme" || strings.Join(id.Groups, ",") != "internal-tools,x" || id.Claims["department"] != "finance" {
				t.Fatalf("%+v", id)
			}
		}},
		{name: "within leeway: expired 10s ago, nbf and iat 10s ahead", key: f.rsa, extra: map[string]any{
			"exp": now.Add(-10 * time.Second).Unix(), "nbf": now.Add(10 * time.Second).Unix(), "iat": now.Add(10 * time.Second).Unix(),
		}},
		{name: "no nbf, no iat, no sub", key: f.rsa, extra: map[string]any{"nbf": nil, "iat": nil, "sub": nil}},
		{name: "token of the other issuer at server B", key: f.rsa2, server: f.reqB},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, iss, aud := f.reqA, f.iss, audA
			if c.server != nil {
				req, iss, aud = c.server, f.other, audB
			}
			tok := c.key.sign(t, iss.claims(aud, c.extra))
			id, err := f.v.Validate(context.Background(), tok, req)
			if err != nil {
				t.Fatal(err)
			}
			if c.check != nil {
				c.check(t, id)
			}
		})
	}
}

func TestCustomClaimNames(t *testing.T) {
	k := newTestKey(t, "k", jwa.RS256, 0)
	iss := newTestIssuer(t, "", k)
	ks := iss.keySet(t, func(s *IssuerSpec) {
		s.AgentClaim, s.GroupsClaim, s.Algorithms = "appid", "roles", []string{"RS256"}
	})
	v := NewValidator(nil, nil)
	id, err := v.Validate(context.Background(), k.sign(t, iss.claims(audA, map[string]any{"appid": "app-7", "roles": "admin"})),
		&Requirements{Issuers: []*KeySet{ks}, Audience: audA})
	if err != nil {
		t.Fatal(err)
	}
	if id.Agent != "app-7" || len(id.Groups) != 1 || id.Groups[0] != "admin" {
		t.Fatalf("%+v", id)
	}
	// An explicit agent claim does not fall back to client_id.
	id, err = v.Validate(context.Background(), k.sign(t, iss.claims(audA, nil)), &Requirements{Issuers: []*KeySet{ks}, Audience: audA})
	if err != nil || id.Agent != "" {
		t.Fatalf("%v %+v", err, id)
	}
}

func TestCacheHitSkipsVerification(t *testing.T) {
	f := newFixture(t)
	tok := f.rsa.sign(t, f.iss.claims(audA, nil))
	ctx := context.Background()
	id1, err := f.v.Validate(ctx, tok, f.reqA)
	if err != nil {
		t.Fatal(err)
	}
	f.cache.rc.Wait()
	for i := 0; i < 10; i++ {
		id2, err := f.v.Validate(ctx, tok, f.reqA)
		if err != nil {
			t.Fatal(err)
		}
		if id2 != id1 {
			t.Fatal("not served from cache")
		}
	}
	if n := f.v.Stats().Verifications; n != 1 {
		t.Fatalf("verifications = %d, want 1", n)
	}
	if st := f.cache.Stats(); st.Hits != 10 || st.Misses != 1 {
		t.Fatalf("cache stats %+v", st)
	}
}

func TestCacheRechecksRequirements(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// A token for server B (tenant globex), verified and cached at B...
	tokB := f.rsa.sign(t, f.iss.claims(audB, map[string]any{"tenant": "globex"}))
	if _, err := f.v.Validate(ctx, tokB, f.reqB); err != nil {
		t.Fatal(err)
	}
	f.cache.rc.Wait()
	// ...is refused at server A on the cache hit.
	_, err := f.v.Validate(ctx, tokB, f.reqA)
	if e := mustErr(t, err, 401, CodeInvalidToken); !strings.Contains(e.Description, "audience") {
		t.Fatal(e)
	}
	// Same audience, other tenant: refused by the tenant claim on the hit.
	reqB2 := &Requirements{Issuers: f.reqB.Issuers, Audience: audB, Tenant: "acme"}
	_, err = f.v.Validate(ctx, tokB, reqB2)
	if e := mustErr(t, err, 401, CodeInvalidToken); !strings.Contains(e.Description, "tenant") {
		t.Fatal(e)
	}
	// Same audience, but a server that does not trust the issuer.
	reqB3 := &Requirements{Issuers: []*KeySet{f.otherKS}, Audience: audB}
	_, err = f.v.Validate(ctx, tokB, reqB3)
	if e := mustErr(t, err, 401, CodeInvalidToken); !strings.Contains(e.Description, "issuer") {
		t.Fatal(e)
	}
	if f.cache.Stats().Hits != 3 || f.v.Stats().Verifications != 1 {
		t.Fatalf("expected 3 hits, 1 verification: %+v %+v", f.cache.Stats(), f.v.Stats())
	}
	// Expiry is re-checked on a hit.
	f.v.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	_, err = f.v.Validate(ctx, tokB, f.reqB)
	if e := mustErr(t, err, 401, CodeInvalidToken); !strings.Contains(e.Description, "expired") {
		t.Fatal(e)
	}
}

func TestConcurrentValidate(t *testing.T) {
	f := newFixture(t)
	toks := []string{
		f.rsa.sign(t, f.iss.claims(audA, nil)),
		f.ec.sign(t, f.iss.claims(audA, nil)),
		f.ed.sign(t, f.iss.claims(audA, nil)),
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if _, err := f.v.Validate(context.Background(), toks[(g+i)%3], f.reqA); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
}
