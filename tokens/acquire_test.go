package tokens

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddymcp/gateway/internal/oidctest"
)

const acqSecret = "s3cr3t-client-secret-value"

// acqProvider starts a real oidctest authorization server with clients.
func acqProvider(t testing.TB, opts ...oidctest.Option) *oidctest.Provider {
	t.Helper()
	p, err := oidctest.Start("", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func acqRegister(t testing.TB, p *oidctest.Provider, c oidctest.Client) {
	t.Helper()
	if c.Secret == "" {
		c.Secret = acqSecret
	}
	if err := p.RegisterClient(c); err != nil {
		t.Fatal(err)
	}
}

func acqNew(t testing.TB, cfg AcquirerConfig) *Acquirer {
	t.Helper()
	if cfg.Connection == "" {
		cfg.Connection = "notion"
	}
	if cfg.Tenant == "" {
		cfg.Tenant = "acme"
	}
	a, err := NewAcquirer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// acqNoSecret fails if s contains any of the secrets.
func acqNoSecret(t testing.TB, s string, secrets ...string) {
	t.Helper()
	for _, sec := range secrets {
		if sec != "" && strings.Contains(s, sec) {
			t.Fatalf("secret leaked in %q", s)
		}
	}
}

func TestAcquireClientCredentials(t *testing.T) {
	p := acqProvider(t)
	acqRegister(t, p, oidctest.Client{ID: "acme-gw", Scopes: []string{"read_content", "update_content"}, Tenant: "acme"})
	for _, method := range []string{AuthMethodClientSecretBasic, AuthMethodClientSecretPost} {
		t.Run(method, func(t *testing.T) {
			a := acqNew(t, AcquirerConfig{
				TokenURL: p.TokenURL(), ClientID: "acme-gw", ClientSecret: acqSecret, AuthMethod: method,
				Scopes: []string{"read_content"}, Resource: "https://api.notion.example",
			})
			before := p.TokenRequests("acme-gw")
			tok, err := a.Acquire(context.Background(), AcquireRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if got := p.TokenRequests("acme-gw") - before; got != 1 {
				t.Fatalf("token requests = %d", got)
			}
			claims, err := p.Verify(tok.AccessToken)
			if err != nil {
				t.Fatal(err)
			}
			if claims["scope"] != "read_content" || claims["client_id"] != "acme-gw" {
				t.Fatalf("claims %v", claims)
			}
			if aud := fmt.Sprint(claims["aud"]); !strings.Contains(aud, "https://api.notion.example") {
				t.Fatalf("aud %v", aud)
			}
			if tok.TokenType != "Bearer" || tok.Authorization() != "Bearer "+tok.AccessToken {
				t.Fatalf("token type %q", tok.TokenType)
			}
			if d := time.Until(tok.Expiry); d < 59*time.Minute || d > 61*time.Minute {
				t.Fatalf("expiry in %v, want ~1h", d)
			}
			// Requested scopes override the configured ones.
			tok2, err := a.Acquire(context.Background(), AcquireRequest{Scopes: []string{"read_content", "update_content"}})
			if err != nil {
				t.Fatal(err)
			}
			c2, _ := p.Verify(tok2.AccessToken)
			if c2["scope"] != "read_content update_content" {
				t.Fatalf("scope %v", c2["scope"])
			}
			acqNoSecret(t, tok.String()+fmt.Sprintf("%v %+v %#v", tok, tok, tok), tok.AccessToken)
			if st := a.Stats(); st.Requests != 2 || st.Failures != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestAcquireWrongSecretError(t *testing.T) {
	p := acqProvider(t)
	acqRegister(t, p, oidctest.Client{ID: "acme-gw"})
	wrong := "wrong-secret-that-must-not-leak"
	a := acqNew(t, AcquirerConfig{TokenURL: p.TokenURL(), ClientID: "acme-gw", ClientSecret: wrong})
	_, err := a.Acquire(context.Background(), AcquireRequest{})
	var ae *AcquireError
	if !errors.As(err, &ae) {
		t.Fatalf("err %T %v", err, err)
	}
	if ae.Status != http.StatusUnauthorized && ae.Status != http.StatusBadRequest {
		t.Fatalf("status %d", ae.Status)
	}
	if ae.Code != "invalid_client" {
		t.Fatalf("code %q (%v)", ae.Code, err)
	}
	if !strings.Contains(err.Error(), `connection "notion"`) || !strings.Contains(err.Error(), "acme") {
		t.Fatalf("error does not name the connection: %v", err)
	}
	acqNoSecret(t, err.Error(), wrong, acqSecret)
}

func TestAcquireEndpointDown(t *testing.T) {
	p := acqProvider(t)
	acqRegister(t, p, oidctest.Client{ID: "acme-gw"})
	p.SetStatus(oidctest.EndpointToken, http.StatusServiceUnavailable)
	a := acqNew(t, AcquirerConfig{TokenURL: p.TokenURL(), ClientID: "acme-gw", ClientSecret: acqSecret})
	_, err := a.Acquire(context.Background(), AcquireRequest{})
	var ae *AcquireError
	if !errors.As(err, &ae) || ae.Status != 503 || ae.Code != "temporarily_unavailable" || ae.Connection != "notion" {
		t.Fatalf("err %v", err)
	}
	acqNoSecret(t, err.Error(), acqSecret)

	// Nothing listening at all.
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	a2 := acqNew(t, AcquirerConfig{TokenURL: url + "/token", ClientID: "acme-gw", ClientSecret: acqSecret})
	_, err = a2.Acquire(context.Background(), AcquireRequest{})
	if !errors.As(err, &ae) || ae.Status != 0 || !strings.Contains(err.Error(), "notion") {
		t.Fatalf("err %v", err)
	}
	acqNoSecret(t, err.Error(), acqSecret)
	if a2.Stats().Failures != 1 {
		t.Fatalf("failures %d", a2.Stats().Failures)
	}
}

func TestAcquireSlowEndpointTimeout(t *testing.T) {
	p := acqProvider(t)
	acqRegister(t, p, oidctest.Client{ID: "acme-gw"})
	p.SetDelay(oidctest.EndpointToken, 5*time.Second)
	a := acqNew(t, AcquirerConfig{TokenURL: p.TokenURL(), ClientID: "acme-gw", ClientSecret: acqSecret, Timeout: 200 * time.Millisecond})
	start := time.Now()
	_, err := a.Acquire(context.Background(), AcquireRequest{})
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("took %v", el)
	}
	var ae *AcquireError
	if !errors.As(err, &ae) || !ae.Timeout || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	if !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err %v", err)
	}
}

func TestAcquireRefreshRotation(t *testing.T) {
	p := acqProvider(t)
	acqRegister(t, p, oidctest.Client{ID: "notion-app", Tenant: "acme"})
	rt0, err := p.IssueRefreshToken("notion-app", "user-1", []string{"https://api.notion.example"}, "read_content")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	stored := "" // what the caller's storage holds
	var persisted []string
	a := acqNew(t, AcquirerConfig{
		Grant: GrantRefreshToken, TokenURL: p.TokenURL(), ClientID: "notion-app", ClientSecret: acqSecret,
		RefreshToken: rt0,
		LoadRefreshToken: func(context.Context) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			return stored, nil
		},
		StoreRefreshToken: func(_ context.Context, rt string) error {
			mu.Lock()
			defer mu.Unlock()
			stored = rt
			persisted = append(persisted, rt)
			return nil
		},
	})
	tok, err := a.Acquire(context.Background(), AcquireRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := p.Verify(tok.AccessToken); err != nil || c["sub"] != "user-1" {
		t.Fatalf("claims %v %v", c, err)
	}
	if len(persisted) != 1 || persisted[0] == rt0 {
		t.Fatalf("persisted %d", len(persisted))
	}
	if p.RefreshTokenValid(rt0) {
		t.Fatal("old refresh token still valid: provider did not rotate")
	}
	// The next refresh uses the persisted token (the old one is dead).
	if _, err := a.Acquire(context.Background(), AcquireRequest{}); err != nil {
		t.Fatal(err)
	}
	if len(persisted) != 2 || persisted[1] == persisted[0] {
		t.Fatalf("persisted %d", len(persisted))
	}
	// A new Acquirer (restart / other instance) starts from storage, not
	// from the configured (now invalid) token.
	b := acqNew(t, AcquirerConfig{
		Grant: GrantRefreshToken, TokenURL: p.TokenURL(), ClientID: "notion-app", ClientSecret: acqSecret,
		RefreshToken:      rt0,
		LoadRefreshToken:  func(context.Context) (string, error) { mu.Lock(); defer mu.Unlock(); return stored, nil },
		StoreRefreshToken: func(_ context.Context, rt string) error { mu.Lock(); defer mu.Unlock(); stored = rt; return nil },
	})
	if _, err := b.Acquire(context.Background(), AcquireRequest{}); err != nil {
		t.Fatal(err)
	}
	// The first Acquirer's in-memory token is now stale; it recovers from
	// invalid_grant by re-reading the store.
	if _, err := a.Acquire(context.Background(), AcquireRequest{}); err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.Rotations != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestAcquireRefreshPersistFailure(t *testing.T) {
	p := acqProvider(t)
	acqRegister(t, p, oidctest.Client{ID: "notion-app"})
	rt0, _ := p.IssueRefreshToken("notion-app", "", nil, "read_content")
	var reported error
	a := acqNew(t, AcquirerConfig{
		Grant: GrantRefreshToken, TokenURL: p.TokenURL(), ClientID: "notion-app", ClientSecret: acqSecret,
		RefreshToken:      rt0,
		LoadRefreshToken:  func(context.Context) (string, error) { return rt0, nil }, // storage never updated
		StoreRefreshToken: func(context.Context, string) error { return errors.New("disk full") },
		OnPersistError:    func(err error) { reported = err },
	})
	if _, err := a.Acquire(context.Background(), AcquireRequest{}); err != nil {
		t.Fatal(err)
	}
	if reported == nil || a.Stats().PersistFailures != 1 {
		t.Fatal("persist failure not reported")
	}
	acqNoSecret(t, reported.Error(), rt0, acqSecret)
	// The unpersisted token kept in memory is used next, not the stale store.
	if _, err := a.Acquire(context.Background(), AcquireRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestAcquireTokenExchange(t *testing.T) {
	p := acqProvider(t)
	acqRegister(t, p, oidctest.Client{ID: "agent-1", Tenant: "acme", Subject: "alice", Scopes: []string{"mcp:read"}})
	acqRegister(t, p, oidctest.Client{ID: "gateway", Scopes: []string{"calendar.read", "calendar.write"}})
	subject, err := p.AgentToken(context.Background(), "agent-1", "https://mcp.example.com/acme/mcp", "mcp:read")
	if err != nil {
		t.Fatal(err)
	}
	a := acqNew(t, AcquirerConfig{
		Connection: "calendar", Grant: GrantTokenExchange, TokenURL: p.TokenURL(),
		ClientID: "gateway", ClientSecret: acqSecret, Audience: "https://calendar.acme.example",
		Scopes: []string{"calendar.read"},
	})
	tok, err := a.Acquire(context.Background(), AcquireRequest{SubjectToken: subject})
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Verify(tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	act, _ := c["act"].(map[string]any)
	if c["sub"] != "alice" || act["sub"] != "gateway" || c["scope"] != "calendar.read" || c["tenant"] != "acme" {
		t.Fatalf("claims %v", c)
	}
	if aud := fmt.Sprint(c["aud"]); !strings.Contains(aud, "https://calendar.acme.example") {
		t.Fatalf("aud %v", aud)
	}
	if tok.IssuedTokenType != TokenTypeAccessToken {
		t.Fatalf("issued_token_type %q", tok.IssuedTokenType)
	}
	// No subject token: refused locally.
	if _, err := a.Acquire(context.Background(), AcquireRequest{}); err == nil {
		t.Fatal("exchange without subject token")
	}
	// A forged subject token: the server refuses; the error has no token.
	forged := subject[:len(subject)-4] + "AAAA"
	_, err = a.Acquire(context.Background(), AcquireRequest{SubjectToken: forged})
	var ae *AcquireError
	if !errors.As(err, &ae) || ae.Status == 0 {
		t.Fatalf("err %v", err)
	}
	acqNoSecret(t, err.Error(), forged, subject, acqSecret)
}

func TestAcquireExpiresInDefault(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.FormValue("scope") == "str" {
			fmt.Fprint(w, `{"access_token":"abc","token_type":"bearer","expires_in":"120"}`)
			return
		}
		if r.FormValue("scope") == "mac" {
			fmt.Fprint(w, `{"access_token":"abc","token_type":"mac"}`)
			return
		}
		fmt.Fprint(w, `{"access_token":"abc","token_type":"Bearer"}`)
	}))
	defer srv.Close()
	a := acqNew(t, AcquirerConfig{TokenURL: srv.URL, ClientID: "x", ClientSecret: acqSecret})
	tok, err := a.Acquire(context.Background(), AcquireRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if d := tok.Expiry.Sub(tok.IssuedAt); d != DefaultTokenExpiresIn {
		t.Fatalf("default life %v", d)
	}
	tok, err = a.Acquire(context.Background(), AcquireRequest{Scopes: []string{"str"}})
	if err != nil || tok.Expiry.Sub(tok.IssuedAt) != 2*time.Minute {
		t.Fatalf("string expires_in: %v %v", tok, err)
	}
	if _, err := a.Acquire(context.Background(), AcquireRequest{Scopes: []string{"mac"}}); err == nil {
		t.Fatal("accepted token_type mac")
	}
}

func TestAcquireNoRedirectAndConfig(t *testing.T) {
	var hits int
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits++ }))
	defer target.Close()
	redir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusTemporaryRedirect)
	}))
	defer redir.Close()
	a := acqNew(t, AcquirerConfig{TokenURL: redir.URL, ClientID: "x", ClientSecret: acqSecret})
	if _, err := a.Acquire(context.Background(), AcquireRequest{}); err == nil {
		t.Fatal("redirect accepted")
	}
	if hits != 0 {
		t.Fatal("redirect followed with the secret")
	}
	for _, cfg := range []AcquirerConfig{
		{TokenURL: "ftp://x/token", ClientID: "x"},
		{TokenURL: "https://user:pw@x/token", ClientID: "x"},
		{TokenURL: "https://x/token"},
		{TokenURL: "https://x/token", ClientID: "x", AuthMethod: "private_key_jwt"},
		{TokenURL: "https://x/token", ClientID: "x", Grant: GrantRefreshToken},
	} {
		if _, err := NewAcquirer(cfg); err == nil {
			t.Errorf("accepted %+v", cfg)
		}
	}
}
