// Package oidctest runs a real OAuth 2.0 / OpenID Connect authorization server for tests and
// the local demo, built on github.com/zitadel/oidc/v3 pkg/op with an in-memory storage.
//
// What is real (served by the library's handlers, over HTTP):
//   - discovery: /.well-known/openid-configuration (the library) and RFC 8414
//     /.well-known/oauth-authorization-server (added here, same document; for an issuer with a
//     path both the RFC 8414 path-insertion form and the appended form are served);
//   - JWKS (/keys), token endpoint (/oauth/token), introspection (/oauth/introspect), revocation;
//   - grants: client_credentials, RFC 8693 token exchange (subject_token = an access token
//     this provider issued), refresh_token (rotating by default). Authorization code, device
//     and JWT-profile grants are not supported (agents here are machines).
//
// Access tokens are always JWTs (RS256 by default, ES256 with WithAlgorithm). A
// client-credentials token carries iss, sub (Client.Subject, default the client ID),
// client_id, aud (the request's RFC 8707 "resource" and/or "audience" parameters, else
// Client.Audience, else the client ID), scope (space-delimited), groups, tenant, the client's
// extra Claims, exp, iat, nbf, jti. The library cannot set arbitrary registered claims
// (an expired exp, a future nbf, a foreign iss) through a grant: Sign signs any claims with
// the provider's current key for such tokens.
//
// Operational knobs for tests: key rotation with a controllable grace period (RotateKey,
// RemoveKey), per-endpoint outage/status and delay (SetStatus, SetDelay), and request
// counters per endpoint and per client at the token endpoint (Requests, TokenRequests).
package oidctest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Endpoint names one of the provider's endpoints, for SetStatus, SetDelay and Requests.
type Endpoint string

const (
	EndpointDiscovery     Endpoint = "discovery" // both discovery documents
	EndpointJWKS          Endpoint = "jwks"
	EndpointToken         Endpoint = "token"
	EndpointIntrospection Endpoint = "introspection"
)

// Paths of the endpoints, relative to the issuer.
const (
	TokenPath         = "/oauth/token"
	JWKSPath          = "/keys"
	IntrospectionPath = "/oauth/introspect"
)

type config struct {
	alg        jose.SignatureAlgorithm
	ttl        time.Duration
	issuerPath string
	noRotate   bool
	clients    []Client
}

// Option configures Start.
type Option func(*config) error

// WithAlgorithm sets the signing algorithm of the provider's keys: "RS256" (default) or "ES256".
func WithAlgorithm(alg string) Option {
	return func(c *config) error {
		switch alg {
		case "RS256", "ES256":
			c.alg = jose.SignatureAlgorithm(alg)
			return nil
		}
		return fmt.Errorf("oidctest: unsupported algorithm %q (RS256 or ES256)", alg)
	}
}

// WithTokenTTL sets the default access token lifetime (default 1h).
func WithTokenTTL(d time.Duration) Option {
	return func(c *config) error { c.ttl = d; return nil }
}

// WithIssuerPath gives the issuer a path, e.g. "/tenant-a": issuer http://HOST:PORT/tenant-a.
func WithIssuerPath(p string) Option {
	return func(c *config) error {
		c.issuerPath = "/" + strings.Trim(p, "/")
		if c.issuerPath == "/" {
			c.issuerPath = ""
		}
		return nil
	}
}

// WithoutRefreshRotation makes the refresh grant return the same refresh token (default: a
// new one each time, the old one invalidated).
func WithoutRefreshRotation() Option {
	return func(c *config) error { c.noRotate = true; return nil }
}

// WithClients registers clients at start.
func WithClients(clients ...Client) Option {
	return func(c *config) error { c.clients = append(c.clients, clients...); return nil }
}

// Provider is a running authorization server.
type Provider struct {
	cfg      config
	issuer   string
	base     string
	ln       net.Listener
	srv      *http.Server
	op       *op.Provider
	store    *storage
	handler  http.Handler
	client   *http.Client
	mu       sync.Mutex
	status   map[Endpoint]int
	delay    map[Endpoint]time.Duration
	counts   map[Endpoint]*atomic.Int64
	byClient sync.Map // client id -> *atomic.Int64 (token endpoint)
}

// Start listens on addr (host:port; "" or ":0" means 127.0.0.1 on a free port; an empty host
// means 127.0.0.1) and serves the provider until Close.
func Start(addr string, opts ...Option) (*Provider, error) {
	cfg := config{alg: jose.RS256, ttl: time.Hour}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if addr == "" {
		addr = ":0"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("oidctest: address %q: %w", addr, err)
	}
	if host == "" {
		host = "127.0.0.1"
		_, port, _ := net.SplitHostPort(addr)
		addr = net.JoinHostPort(host, port)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("oidctest: %w", err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	p, err := newProvider(cfg, "http://"+net.JoinHostPort(host, port))
	if err != nil {
		ln.Close()
		return nil, err
	}
	p.ln = ln
	p.srv = &http.Server{Handler: p.handler, ReadHeaderTimeout: 10 * time.Second}
	go p.srv.Serve(ln)
	return p, nil
}

// New builds a provider for the given base URL (scheme://host:port) without listening; serve
// Handler yourself (for example from httptest or a shared mux).
func New(baseURL string, opts ...Option) (*Provider, error) {
	cfg := config{alg: jose.RS256, ttl: time.Hour}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	return newProvider(cfg, strings.TrimRight(baseURL, "/"))
}

func newProvider(cfg config, base string) (*Provider, error) {
	p := &Provider{
		cfg:    cfg,
		base:   base,
		issuer: base + cfg.issuerPath,
		status: map[Endpoint]int{},
		delay:  map[Endpoint]time.Duration{},
		counts: map[Endpoint]*atomic.Int64{},
		client: &http.Client{Timeout: 10 * time.Second},
	}
	for _, e := range []Endpoint{EndpointDiscovery, EndpointJWKS, EndpointToken, EndpointIntrospection} {
		p.counts[e] = new(atomic.Int64)
	}
	k, err := newKey(cfg.alg)
	if err != nil {
		return nil, err
	}
	p.store = &storage{
		clients:  map[string]*Client{},
		tokens:   map[string]*issuedToken{},
		refresh:  map[string]*refreshGrant{},
		keys:     []*key{k},
		ttl:      cfg.ttl,
		noRotate: cfg.noRotate,
	}
	for _, c := range cfg.clients {
		if err := p.RegisterClient(c); err != nil {
			return nil, err
		}
	}
	cryptoKey := sha256.Sum256([]byte(uuid.NewString()))
	p.op, err = op.NewProvider(&op.Config{
		CryptoKey:             cryptoKey,
		AuthMethodPost:        true,
		GrantTypeRefreshToken: true,
	}, p.store, op.StaticIssuer(p.issuer),
		op.WithAllowInsecure(),
		op.WithCustomTokenEndpoint(op.NewEndpoint(strings.TrimPrefix(TokenPath, "/"))),
		op.WithCustomKeysEndpoint(op.NewEndpoint(strings.TrimPrefix(JWKSPath, "/"))),
		op.WithCustomIntrospectionEndpoint(op.NewEndpoint(strings.TrimPrefix(IntrospectionPath, "/"))),
	)
	if err != nil {
		return nil, fmt.Errorf("oidctest: %w", err)
	}
	p.handler = p.buildHandler()
	return p, nil
}

func newKey(alg jose.SignatureAlgorithm) (*key, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		return nil, err
	}
	return &key{id: uuid.NewString()[:8], alg: alg, priv: priv}, nil
}

// buildHandler wraps the library's router: counters, outages, delays, RFC 8414 discovery, and
// the form parameters the library's request types drop.
func (p *Provider) buildHandler() http.Handler {
	var inner http.Handler = p.op
	if ip := p.cfg.issuerPath; ip != "" {
		inner = http.StripPrefix(ip, inner)
	}
	ip := p.cfg.issuerPath
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		var ep Endpoint
		switch path {
		case ip + oidc.DiscoveryEndpoint, "/.well-known/oauth-authorization-server" + ip, ip + "/.well-known/oauth-authorization-server":
			ep = EndpointDiscovery
		case ip + JWKSPath:
			ep = EndpointJWKS
		case ip + TokenPath:
			ep = EndpointToken
		case ip + IntrospectionPath:
			ep = EndpointIntrospection
		}
		if ep != "" {
			p.counts[ep].Add(1)
			if ep == EndpointToken && r.Method == http.MethodPost {
				p.prepareTokenRequest(r)
			}
			p.mu.Lock()
			status, delay := p.status[ep], p.delay[ep]
			p.mu.Unlock()
			if delay > 0 {
				select {
				case <-time.After(delay):
				case <-r.Context().Done():
					return
				}
			}
			if status != 0 {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				fmt.Fprintf(w, `{"error":"temporarily_unavailable","error_description":"oidctest: %s answers %d"}`, ep, status)
				return
			}
		}
		if ep == EndpointDiscovery && path != ip+oidc.DiscoveryEndpoint {
			// RFC 8414: the same metadata as OpenID discovery.
			r2 := r.Clone(r.Context())
			r2.URL.Path = ip + oidc.DiscoveryEndpoint
			r2.RequestURI = r2.URL.RequestURI()
			inner.ServeHTTP(w, r2)
			return
		}
		inner.ServeHTTP(w, r)
	})
}

// prepareTokenRequest counts the request per client and carries RFC 8707 resource and audience
// to the storage: in the context for client credentials, as "audience" for token exchange
// (the library puts only "audience" in the exchanged token's aud).
func (p *Provider) prepareTokenRequest(r *http.Request) {
	if err := r.ParseForm(); err != nil {
		return
	}
	clientID := r.PostForm.Get("client_id")
	if id, _, ok := r.BasicAuth(); ok {
		if u, err := url.QueryUnescape(id); err == nil {
			id = u
		}
		clientID = id
	}
	n, _ := p.byClient.LoadOrStore(clientID, new(atomic.Int64))
	n.(*atomic.Int64).Add(1)

	params := &tokenParams{resource: r.PostForm["resource"], audience: r.PostForm["audience"]}
	switch r.PostForm.Get("grant_type") {
	case GrantClientCredentials:
		*r = *r.WithContext(context.WithValue(r.Context(), ctxTokenParams, params))
	case GrantTokenExchange:
		if len(params.resource) > 0 {
			r.PostForm["audience"] = append(params.resource, params.audience...)
			r.Form["audience"] = r.PostForm["audience"]
		}
	}
}

// Issuer is the issuer identifier (http://127.0.0.1:PORT[/path]).
func (p *Provider) Issuer() string { return p.issuer }

// BaseURL is scheme://host:port, without the issuer path.
func (p *Provider) BaseURL() string { return p.base }

// TokenURL is the token endpoint.
func (p *Provider) TokenURL() string { return p.issuer + TokenPath }

// JWKSURL is the JWKS endpoint.
func (p *Provider) JWKSURL() string { return p.issuer + JWKSPath }

// DiscoveryURL is the OpenID discovery document.
func (p *Provider) DiscoveryURL() string { return p.issuer + oidc.DiscoveryEndpoint }

// MetadataURL is the RFC 8414 metadata document (path-insertion form).
func (p *Provider) MetadataURL() string {
	return p.base + "/.well-known/oauth-authorization-server" + p.cfg.issuerPath
}

// Handler serves the provider (already served by Start).
func (p *Provider) Handler() http.Handler { return p.handler }

// Close stops serving.
func (p *Provider) Close() error {
	if p.srv == nil {
		return nil
	}
	return p.srv.Close()
}

// RegisterClient adds or replaces a client.
func (p *Provider) RegisterClient(c Client) error {
	if c.ID == "" {
		return errors.New("oidctest: client without ID")
	}
	cp := c
	p.store.mu.Lock()
	p.store.clients[c.ID] = &cp
	p.store.mu.Unlock()
	return nil
}

// --- keys

// KeyID is the kid of the current signing key.
func (p *Provider) KeyID() string {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	return p.store.keys[len(p.store.keys)-1].id
}

// KeyIDs lists the kids the JWKS serves now, current key last.
func (p *Provider) KeyIDs() []string {
	ks, _ := p.store.KeySet(context.Background())
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.ID()
	}
	return out
}

// RotateKey makes a new signing key (new kid, the provider's algorithm) current. The previous
// current key stays in the JWKS for grace (grace > 0), is removed at once (grace == 0), or
// stays until RemoveKey (grace < 0). Keys retired earlier keep their own schedule.
func (p *Provider) RotateKey(grace time.Duration) (string, error) {
	k, err := newKey(p.cfg.alg)
	if err != nil {
		return "", err
	}
	s := p.store
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.keys[len(s.keys)-1]
	switch {
	case grace == 0:
		s.keys = s.keys[:len(s.keys)-1]
	case grace > 0:
		old.retireAt = time.Now().Add(grace)
	}
	s.keys = append(s.keys, k)
	return k.id, nil
}

// RemoveKey drops a non-current key from the JWKS; it reports whether it did.
func (p *Provider) RemoveKey(kid string) bool {
	s := p.store
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, k := range s.keys[:len(s.keys)-1] {
		if k.id == kid {
			s.keys = append(s.keys[:i], s.keys[i+1:]...)
			return true
		}
	}
	return false
}

// Sign signs arbitrary claims with the current signing key (header alg, kid, typ JWT). iss,
// iat, nbf, exp (iat + token TTL) and jti are filled in when absent; any of them, and every
// other claim, may be set to anything (expired, future nbf, foreign iss, foreign tenant...).
// This is not a grant: the token endpoint counter does not move.
func (p *Provider) Sign(claims map[string]any) (string, error) {
	sk, err := p.store.SigningKey(context.Background())
	if err != nil {
		return "", err
	}
	return p.signWith(sk.(*key), claims)
}

func (p *Provider) signWith(k *key, claims map[string]any) (string, error) {
	now := time.Now()
	c := make(map[string]any, len(claims)+5)
	c["iss"] = p.issuer
	c["iat"] = now.Unix()
	c["nbf"] = now.Unix()
	c["exp"] = now.Add(p.cfg.ttl).Unix()
	c["jti"] = uuid.NewString()
	for k, v := range claims {
		c[k] = v
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	signer, err := op.SignerFromKey(k)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// --- fault injection and counters

// SetStatus makes an endpoint answer status (e.g. 503) with an OAuth error body instead of
// serving; 0 serves normally again.
func (p *Provider) SetStatus(ep Endpoint, status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status[ep] = status
}

// SetJWKSDown is SetStatus(EndpointJWKS, 503) or back to normal.
func (p *Provider) SetJWKSDown(down bool) {
	st := 0
	if down {
		st = http.StatusServiceUnavailable
	}
	p.SetStatus(EndpointJWKS, st)
}

// SetDelay delays every answer of an endpoint (0: none).
func (p *Provider) SetDelay(ep Endpoint, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay[ep] = d
}

// Requests counts HTTP requests to an endpoint since start or ResetCounts (failed ones too).
func (p *Provider) Requests(ep Endpoint) int64 {
	if c, ok := p.counts[ep]; ok {
		return c.Load()
	}
	return 0
}

// TokenRequests counts token endpoint POSTs made by one client (client_id from Basic auth or
// the form).
func (p *Provider) TokenRequests(clientID string) int64 {
	if n, ok := p.byClient.Load(clientID); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

// ResetCounts sets every counter to zero.
func (p *Provider) ResetCounts() {
	for _, c := range p.counts {
		c.Store(0)
	}
	p.byClient.Range(func(k, _ any) bool { p.byClient.Delete(k); return true })
}

// --- client helpers (real HTTP requests to the token endpoint)

// Token is a token endpoint response.
type Token struct {
	AccessToken     string `json:"access_token"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	Scope           string `json:"scope"`
	RefreshToken    string `json:"refresh_token"`
	IssuedTokenType string `json:"issued_token_type"`
}

// TokenError is an OAuth error answer of the token endpoint.
type TokenError struct {
	Status      int
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

func (e *TokenError) Error() string {
	return fmt.Sprintf("token endpoint: %d %s: %s", e.Status, e.Code, e.Description)
}

// ClientCredentials runs the client-credentials grant for a registered client (its secret,
// client_secret_basic) with resource (RFC 8707; may be empty) and scopes.
func (p *Provider) ClientCredentials(ctx context.Context, clientID, resource string, scopes ...string) (*Token, error) {
	form := url.Values{"grant_type": {GrantClientCredentials}}
	if resource != "" {
		form.Set("resource", resource)
	}
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	return p.post(ctx, clientID, form)
}

// AgentToken is ClientCredentials returning only the access token (a JWT).
func (p *Provider) AgentToken(ctx context.Context, clientID, resource string, scopes ...string) (string, error) {
	t, err := p.ClientCredentials(ctx, clientID, resource, scopes...)
	if err != nil {
		return "", err
	}
	return t.AccessToken, nil
}

// TokenExchange runs RFC 8693 for a registered client: subjectToken (an access token of this
// provider) exchanged for an access token with the given audience (sent as "resource" when it
// is a URL, else as "audience"; may be empty) and scopes.
func (p *Provider) TokenExchange(ctx context.Context, clientID, subjectToken, audience string, scopes ...string) (*Token, error) {
	form := url.Values{
		"grant_type":         {GrantTokenExchange},
		"subject_token":      {subjectToken},
		"subject_token_type": {string(oidc.AccessTokenType)},
	}
	if audience != "" {
		if strings.Contains(audience, "://") {
			form.Set("resource", audience)
		} else {
			form.Set("audience", audience)
		}
	}
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	return p.post(ctx, clientID, form)
}

// Refresh runs the refresh_token grant for a registered client.
func (p *Provider) Refresh(ctx context.Context, clientID, refreshToken string, scopes ...string) (*Token, error) {
	form := url.Values{"grant_type": {GrantRefreshToken}, "refresh_token": {refreshToken}}
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	return p.post(ctx, clientID, form)
}

// IssueRefreshToken stores a refresh token for a client, as an authorization-code flow with
// offline_access would have (that flow itself is not supported): the refresh grant then issues
// access tokens with this subject (default the client's Subject or ID), audience and scopes.
func (p *Provider) IssueRefreshToken(clientID, subject string, audience []string, scopes ...string) (string, error) {
	c, ok := p.store.client(clientID)
	if !ok {
		return "", fmt.Errorf("oidctest: unknown client %q", clientID)
	}
	if subject == "" {
		subject = (&ccRequest{client: c}).GetSubject()
	}
	return p.store.issueRefreshToken(clientID, subject, audience, scopes), nil
}

// RefreshTokenValid reports whether a refresh token is still accepted.
func (p *Provider) RefreshTokenValid(token string) bool {
	_, err := p.store.TokenRequestByRefreshToken(context.Background(), token)
	return err == nil
}

func (p *Provider) post(ctx context.Context, clientID string, form url.Values) (*Token, error) {
	c, ok := p.store.client(clientID)
	if !ok {
		return nil, fmt.Errorf("oidctest: unknown client %q", clientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.TokenURL(), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	var resp *http.Response
	if p.srv != nil {
		resp, err = p.client.Do(req)
		if err != nil {
			return nil, err
		}
	} else {
		rec := httptest.NewRecorder()
		p.handler.ServeHTTP(rec, req)
		resp = rec.Result()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		te := &TokenError{Status: resp.StatusCode}
		_ = json.Unmarshal(body, te)
		return nil, te
	}
	var t Token
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&t); err != nil {
		return nil, err
	}
	return &t, nil
}

// Verify checks a JWT as a resource server of this provider would: signature by a key the JWKS
// lists now, iss equal to the issuer, exp not passed (nbf not in the future). It returns the
// claims. Audience is the caller's to check.
func (p *Provider) Verify(token string) (map[string]any, error) {
	algs := []jose.SignatureAlgorithm{jose.RS256, jose.ES256}
	jws, err := jose.ParseSigned(token, algs)
	if err != nil {
		return nil, err
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("oidctest: want one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	keys, _ := p.store.KeySet(context.Background())
	for _, k := range keys {
		if k.ID() != kid {
			continue
		}
		payload, err := jws.Verify(k.Key())
		if err != nil {
			return nil, err
		}
		var claims map[string]any
		if err := json.Unmarshal(payload, &claims); err != nil {
			return nil, err
		}
		if claims["iss"] != p.issuer {
			return nil, fmt.Errorf("oidctest: iss %v", claims["iss"])
		}
		now := float64(time.Now().Unix())
		if exp, ok := claims["exp"].(float64); !ok || exp < now {
			return nil, errors.New("oidctest: token expired")
		}
		if nbf, ok := claims["nbf"].(float64); ok && nbf > now+30 {
			return nil, errors.New("oidctest: token not yet valid")
		}
		return claims, nil
	}
	return nil, fmt.Errorf("oidctest: unknown kid %q", kid)
}
