package tokens

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
)

var (
	fuzzOnce sync.Once
	fuzzEnv  struct {
		v     *Validator
		req   *Requirements
		valid string
	}
)

// FuzzBearerAndParse feeds arbitrary Authorization header values and token
// strings through BearerToken and Validate: nothing may panic, every error
// must be ErrNoToken or a well-formed *Error, and nothing but the one
// genuinely signed seed token may ever be accepted.
func FuzzBearerAndParse(f *testing.F) {
	fuzzOnce.Do(func() {
		k := newTestKey(f, "fz", jwa.ES256, 0)
		iss := newTestIssuer(f, "", k)
		ks, err := NewKeySet(IssuerSpec{Issuer: iss.issuer}, iss.srv.Client(), nil)
		if err != nil {
			f.Fatal(err)
		}
		_ = ks.Start(context.Background())
		ks.kidMissGap = time.Hour // never refetch during fuzzing
		c, _ := NewCache(1 << 20)
		fuzzEnv.v = NewValidator(c, nil)
		fuzzEnv.req = &Requirements{Issuers: []*KeySet{ks}, Audience: audA, Tenant: "acme"}
		fuzzEnv.valid = k.sign(f, iss.claims(audA, nil))
	})
	valid := fuzzEnv.valid
	p := strings.Split(valid, ".")
	f.Add("Bearer "+valid, valid)
	f.Add("bearer  "+valid, p[0]+"."+p[1]+".")
	f.Add("Bearer", "a.b.c")
	f.Add("Basic Zm9vOmJhcg==", "..")
	f.Add("Bearer a b", p[0]+"."+p[1]+"."+p[2]+"=")
	f.Add("Bearer ==", b64json(map[string]any{"alg": "none"})+"."+p[1]+".")
	f.Add("Bearer x", b64json(map[string]any{"alg": "HS256", "kid": "fz"})+"."+p[1]+"."+p[2])
	f.Add("Bearer x", b64json(map[string]any{"alg": "ES256", "kid": "fz", "crit": []string{"x"}})+"."+p[1]+"."+p[2])
	f.Add("Bearer x", b64json(map[string]any{"alg": "ES256"})+"."+b64json(map[string]any{"iss": 1, "exp": "x", "aud": []any{1}})+"."+p[2])

	f.Fuzz(func(t *testing.T, header, token string) {
		ctx := context.Background()
		r := httptest.NewRequest("GET", "/mcp", nil)
		r.Header["Authorization"] = []string{header}
		tok, err := BearerToken(r)
		checkErr(t, err)
		if err == nil {
			if tok == "" || len(tok) > MaxTokenSize || !isB64Token(tok) {
				t.Fatalf("BearerToken returned %q", tok)
			}
			if id, err := fuzzEnv.v.Validate(ctx, tok, fuzzEnv.req); err == nil && tok != valid {
				t.Fatalf("accepted %q: %+v", tok, id)
			} else {
				checkErr(t, err)
			}
		}
		if id, err := fuzzEnv.v.Validate(ctx, token, fuzzEnv.req); err == nil && token != valid {
			t.Fatalf("accepted %q: %+v", token, id)
		} else {
			checkErr(t, err)
		}
	})
}

func checkErr(t *testing.T, err error) {
	if err == nil || err == ErrNoToken {
		return
	}
	e, ok := err.(*Error)
	if !ok {
		t.Fatalf("error of type %T: %v", err, err)
	}
	switch {
	case e.Status == 401 && e.Code == CodeInvalidToken:
	case e.Status == 400 && e.Code == CodeInvalidRequest:
	default:
		t.Fatalf("bad error %+v", e)
	}
	if e.Description == "" {
		t.Fatal("empty description")
	}
}
