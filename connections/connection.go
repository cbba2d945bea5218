package connections

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddymcp/gateway/tokens"
)

// Kind is a connection's credential kind.
type Kind uint8

// Credential kinds.
const (
	KindHeaders       Kind = iota // only extra headers
	KindAPIKey                    // api_key HEADER VALUE
	KindBearer                    // static bearer token
	KindOAuth2                    // client credentials
	KindRefreshToken              // oauth2 with refresh_token
	KindTokenExchange             // RFC 8693
	KindResourceToken             // JWT signed by the gateway
)

func (k Kind) String() string {
	switch k {
	case KindAPIKey:
		return "api_key"
	case KindBearer:
		return "bearer"
	case KindOAuth2:
		return "oauth2"
	case KindRefreshToken:
		return "oauth2_refresh"
	case KindTokenExchange:
		return "token_exchange"
	case KindResourceToken:
		return "resource_token"
	}
	return "headers"
}

// Options are what a Connection needs besides its Spec.
type Options struct {
	// Cache holds connection tokens; required for oauth2, token_exchange and
	// resource_token. Share one across connections (and reloads).
	Cache *tokens.ConnCache
	// Minter signs resource tokens; required for resource_token.
	Minter *tokens.Minter
	// HTTPClient for token requests; default one that follows no redirects.
	HTTPClient *http.Client
	// Timeout bounds one token request (default 10s).
	Timeout time.Duration
	// DefaultExpiresIn is assumed when a token response has no expires_in
	// (default 5m).
	DefaultExpiresIn time.Duration
	// Refresh token grant: the latest stored refresh token (""
	// means none stored yet: the spec's is used) and a callback persisting a
	// rotated one (e.g. in Caddy storage). OnPersistError reports a failed
	// persist (the request still succeeds).
	LoadRefreshToken  func(ctx context.Context) (string, error)
	StoreRefreshToken func(ctx context.Context, refreshToken string) error
	OnPersistError    func(error)
}

// Request is what Credential needs to know about the request.
type Request struct {
	// Scopes are the agent's effective gateway scopes.
	Scopes []string
	// SubjectToken is the agent's validated access token (token exchange).
	SubjectToken string
	// Subject and ClientID are the agent's sub and client_id (resource
	// tokens).
	Subject  string
	ClientID string
	// Groups and Server go into resource tokens (claims "groups" and
	// "mcp_server"), so the gateway's token endpoint can evaluate policy
	// for the original agent at that server.
	Groups []string
	Server string
}

// Credential is what to inject for one request. String never shows it.
type Credential struct {
	// Authorization is the whole Authorization header value ("Bearer ..."),
	// "" when the connection sets none.
	Authorization string
	// Headers are set as given (the API key header, then the extra
	// headers). Shared between requests: read-only.
	Headers []Header
	// Token is the credential itself: the access token, the bearer token or
	// the API key ("" for a headers-only connection). TokenType is "Bearer",
	// or "N_A" for an API key (RFC 8693 token endpoint answers).
	Token     string
	TokenType string
	// Scopes are the downstream scopes the token was requested with.
	Scopes []string
	// Expiry of the token; zero for static credentials.
	Expiry time.Time
}

// String describes the credential without revealing it.
func (c Credential) String() string {
	names := make([]string, 0, len(c.Headers)+1)
	if c.Authorization != "" {
		names = append(names, "Authorization")
	}
	for _, h := range c.Headers {
		names = append(names, h.Name)
	}
	return fmt.Sprintf("Credential{type=%s headers=%v scopes=%v expiry=%s}", c.TokenType, names, c.Scopes, c.Expiry.UTC().Format(time.RFC3339))
}

// GoString is String.
func (c Credential) GoString() string { return c.String() }

// Errors of Credential (wrapped with the connection's name). Token
// endpoint failures are *tokens.AcquireError.
var (
	ErrNoSubjectToken     = errors.New("token exchange needs the agent's access token")
	ErrNoDownstreamScopes = errors.New("no downstream scope for the agent's scopes")
)

// Connection is a compiled connection. It is safe for concurrent use.
type Connection struct {
	spec   Spec
	kind   Kind
	fp     string
	scopes []string // configured downstream scopes (sorted, unique)
	smap   []scopeRule
	static []Header // API key header + extra headers, in order
	strip  []string // header names removed from the client's request
	authz  string   // static Authorization value (bearer)

	cache  *tokens.ConnCache
	acq    *tokens.Acquirer
	minter *tokens.Minter
}

// New compiles a connection.
func New(spec Spec, opts Options) (*Connection, error) {
	if spec.Name == "" {
		return nil, errors.New("connections: a connection needs a name")
	}
	errf := func(format string, a ...any) error {
		return fmt.Errorf("connections: tenant %q: connection %q: %s", spec.Tenant, spec.Name, fmt.Sprintf(format, a...))
	}
	if spec.Tenant == "" {
		return nil, errf("no tenant")
	}
	c := &Connection{spec: spec, cache: opts.Cache, minter: opts.Minter}
	var kinds []Kind
	if spec.APIKey != nil {
		kinds = append(kinds, KindAPIKey)
	}
	if spec.Bearer != "" {
		kinds = append(kinds, KindBearer)
	}
	if spec.OAuth2 != nil {
		if spec.OAuth2.RefreshToken != "" {
			kinds = append(kinds, KindRefreshToken)
		} else {
			kinds = append(kinds, KindOAuth2)
		}
	}
	if spec.TokenExchange != nil {
		kinds = append(kinds, KindTokenExchange)
	}
	if spec.ResourceToken != nil {
		kinds = append(kinds, KindResourceToken)
	}
	switch {
	case len(kinds) > 1:
		return nil, errf("more than one credential kind")
	case len(kinds) == 0 && len(spec.Headers) == 0:
		return nil, errf("no credential and no header")
	case len(kinds) == 1:
		c.kind = kinds[0]
	}

	c.strip = []string{"Authorization", "Cookie", "Proxy-Authorization"}
	addStrip := func(name string) {
		if !slices.ContainsFunc(c.strip, func(s string) bool { return strings.EqualFold(s, name) }) {
			c.strip = append(c.strip, http.CanonicalHeaderKey(name))
		}
	}
	if spec.APIKey != nil {
		if !validHeaderName(spec.APIKey.Header) {
			return nil, errf("api_key: invalid header name")
		}
		if spec.APIKey.Value == "" || !validHeaderValue(spec.APIKey.Value) {
			return nil, errf("api_key: the value is empty or has control characters")
		}
		c.static = append(c.static, Header{Name: http.CanonicalHeaderKey(spec.APIKey.Header), Value: spec.APIKey.Value})
		addStrip(spec.APIKey.Header)
	}
	setsAuthz := c.kind == KindBearer || c.kind == KindOAuth2 || c.kind == KindRefreshToken ||
		c.kind == KindTokenExchange || c.kind == KindResourceToken
	for _, h := range spec.Headers {
		if !validHeaderName(h.Name) {
			return nil, errf("header %q: invalid name", h.Name)
		}
		if !validHeaderValue(h.Value) {
			return nil, errf("header %s: the value has control characters", h.Name)
		}
		if setsAuthz && strings.EqualFold(h.Name, "Authorization") {
			return nil, errf("header Authorization: the %s credential sets it", c.kind)
		}
		if spec.APIKey != nil && strings.EqualFold(h.Name, spec.APIKey.Header) {
			return nil, errf("header %s: the api_key sets it", h.Name)
		}
		c.static = append(c.static, Header{Name: http.CanonicalHeaderKey(h.Name), Value: h.Value})
		addStrip(h.Name)
	}
	for _, m := range spec.ScopeMap {
		r, err := compileScopeRule(m)
		if err != nil {
			return nil, errf("scope_map %q: %v", m.Scope, err)
		}
		c.smap = append(c.smap, r)
	}
	c.fp = fingerprint(&spec)

	base := tokens.AcquirerConfig{
		Connection: spec.Name, Tenant: spec.Tenant,
		Timeout: opts.Timeout, DefaultExpiresIn: opts.DefaultExpiresIn, HTTPClient: opts.HTTPClient,
	}
	var err error
	switch c.kind {
	case KindBearer:
		if !validHeaderValue(spec.Bearer) {
			return nil, errf("bearer: the token has control characters")
		}
		c.authz = "Bearer " + spec.Bearer
	case KindOAuth2, KindRefreshToken:
		o := spec.OAuth2
		cfg := base
		cfg.Grant = tokens.GrantClientCredentials
		cfg.TokenURL, cfg.ClientID, cfg.ClientSecret, cfg.AuthMethod = o.TokenURL, o.ClientID, o.ClientSecret, o.AuthMethod
		cfg.Audience, cfg.Resource = o.Audience, o.Resource
		if c.kind == KindRefreshToken {
			cfg.Grant = tokens.GrantRefreshToken
			cfg.RefreshToken = o.RefreshToken
			cfg.LoadRefreshToken, cfg.StoreRefreshToken, cfg.OnPersistError = opts.LoadRefreshToken, opts.StoreRefreshToken, opts.OnPersistError
		}
		c.scopes = sortedUnique(o.Scopes)
		cfg.Scopes = c.scopes
		if c.acq, err = tokens.NewAcquirer(cfg); err != nil {
			return nil, errf("oauth2: %v", err)
		}
	case KindTokenExchange:
		te := spec.TokenExchange
		cfg := base
		cfg.Grant = tokens.GrantTokenExchange
		cfg.TokenURL, cfg.ClientID, cfg.ClientSecret, cfg.AuthMethod = te.TokenURL, te.ClientID, te.ClientSecret, te.AuthMethod
		cfg.Audience, cfg.Resource = te.Audience, te.Resource
		c.scopes = sortedUnique(te.Scopes)
		cfg.Scopes = c.scopes
		if c.acq, err = tokens.NewAcquirer(cfg); err != nil {
			return nil, errf("token_exchange: %v", err)
		}
	case KindResourceToken:
		if spec.ResourceToken.Audience == "" {
			return nil, errf("resource_token: no audience")
		}
		if c.minter == nil {
			return nil, errf("resource_token: resource tokens are not enabled (no minter)")
		}
	}
	if c.acq != nil || c.kind == KindResourceToken {
		if c.cache == nil {
			return nil, errf("no token cache")
		}
	}
	return c, nil
}

// Name, Tenant and Kind describe the connection.
func (c *Connection) Name() string   { return c.spec.Name }
func (c *Connection) Tenant() string { return c.spec.Tenant }
func (c *Connection) Kind() Kind     { return c.kind }

// Audience is the audience of a resource_token connection ("" otherwise).
func (c *Connection) Audience() string {
	if c.spec.ResourceToken == nil {
		return ""
	}
	return c.spec.ResourceToken.Audience
}

// Fingerprint identifies the configuration (a hash that includes the
// secrets; it is not reversible and only used in cache keys).
func (c *Connection) Fingerprint() string { return c.fp }

// StripHeaders are the header names Inject removes from the client's
// request (canonical form).
func (c *Connection) StripHeaders() []string { return slices.Clone(c.strip) }

// Stats are the token request counters of an oauth2 or token_exchange
// connection (zero otherwise).
func (c *Connection) Stats() tokens.AcquirerStats {
	if c.acq == nil {
		return tokens.AcquirerStats{}
	}
	return c.acq.Stats()
}

// DownstreamScopes maps the agent's effective gateway scopes through the
// scope_map: the union of the downstream scopes of every rule whose glob
// matches one of them, sorted and deduplicated. Without a scope_map, or
// when nothing maps, it is the configured scopes (oauth2 / token_exchange
// `scopes`; nil for other kinds). The result may be shared: read-only.
func (c *Connection) DownstreamScopes(effective []string) []string {
	if len(c.smap) == 0 {
		return c.scopes
	}
	var out []string
	for _, s := range effective {
		for i := range c.smap {
			if c.smap[i].match(s) {
				out = append(out, c.smap[i].downstream...)
			}
		}
	}
	if len(out) == 0 {
		return c.scopes
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Credential returns what to inject for a request: static credentials as
// they are, tokens from the cache (one token request per cache key under
// concurrent misses; a cached token keeps serving while the token endpoint
// fails, until it expires). Errors name the connection and never carry a
// secret; token endpoint failures unwrap to *tokens.AcquireError.
func (c *Connection) Credential(ctx context.Context, req Request) (Credential, error) {
	switch c.kind {
	case KindHeaders:
		return Credential{Headers: c.static}, nil
	case KindAPIKey:
		return Credential{Headers: c.static, Token: c.spec.APIKey.Value, TokenType: "N_A"}, nil
	case KindBearer:
		return Credential{Authorization: c.authz, Headers: c.static, Token: c.spec.Bearer, TokenType: "Bearer"}, nil
	case KindResourceToken:
		return c.resourceToken(ctx, req)
	}
	scopes := c.DownstreamScopes(req.Scopes)
	if len(scopes) == 0 && len(c.smap) > 0 {
		// Asking for no scope would get the client's default (often all)
		// scopes: refuse instead.
		return Credential{}, c.wrap(ErrNoDownstreamScopes)
	}
	key := tokens.ConnCacheKey{Tenant: c.spec.Tenant, Connection: c.spec.Name, Fingerprint: c.fp, Scopes: scopes}
	areq := tokens.AcquireRequest{Scopes: scopes}
	if c.kind == KindTokenExchange {
		if req.SubjectToken == "" {
			return Credential{}, c.wrap(ErrNoSubjectToken)
		}
		key.Subject = req.SubjectToken
		areq.SubjectToken = req.SubjectToken
	}
	tok, err := c.cache.Get(ctx, key, func(ctx context.Context) (*tokens.ConnectionToken, error) {
		return c.acq.Acquire(ctx, areq)
	})
	if err != nil {
		return Credential{}, c.wrap(err)
	}
	tt := tok.TokenType
	if tt == "" {
		tt = "Bearer"
	}
	return Credential{
		Authorization: tok.Authorization(), Headers: c.static, Token: tok.AccessToken, TokenType: tt,
		Scopes: scopes, Expiry: tok.Expiry,
	}, nil
}

// resourceToken mints (or takes from the cache) a resource token for the
// agent: aud = the connection's audience, sub and client_id the agent's,
// tenant the connection's, scope the mapped scopes (with a scope_map) or
// the agent's effective scopes.
func (c *Connection) resourceToken(ctx context.Context, req Request) (Credential, error) {
	var scopes []string
	if len(c.smap) > 0 {
		scopes = c.DownstreamScopes(req.Scopes)
	} else {
		scopes = sortedUnique(req.Scopes)
	}
	kid := c.minter.KeyID()
	key := tokens.ConnCacheKey{
		Tenant: c.spec.Tenant, Connection: c.spec.Name, Fingerprint: c.fp, Scopes: scopes,
		Subject: "rt\x00" + c.minter.Issuer() + "\x00" + kid + "\x00" + req.Subject + "\x00" + req.ClientID +
			"\x00" + req.Server + "\x00" + strings.Join(req.Groups, "\x00"),
	}
	tok, err := c.cache.Get(ctx, key, func(context.Context) (*tokens.ConnectionToken, error) {
		raw, claims, err := c.minter.Mint(tokens.MintRequest{
			Audience: []string{c.spec.ResourceToken.Audience}, Subject: req.Subject, ClientID: req.ClientID,
			Tenant: c.spec.Tenant, Scopes: scopes, TTL: c.spec.ResourceToken.TTL,
			Groups: req.Groups, Server: req.Server,
		})
		if err != nil {
			return nil, err
		}
		return &tokens.ConnectionToken{
			AccessToken: raw, TokenType: "Bearer", IssuedTokenType: tokens.TokenTypeJWT,
			Scope: strings.Join(scopes, " "), IssuedAt: claims.IssuedAt, Expiry: claims.Expiry,
		}, nil
	})
	if err != nil {
		return Credential{}, c.wrap(err)
	}
	return Credential{
		Authorization: tok.Authorization(), Headers: c.static, Token: tok.AccessToken, TokenType: "Bearer",
		Scopes: scopes, Expiry: tok.Expiry,
	}, nil
}

// Error is a Credential failure: it names the connection and tenant.
type Error struct {
	Connection, Tenant string
	Err                error
}

func (e *Error) Error() string {
	var ae *tokens.AcquireError
	if errors.As(e.Err, &ae) {
		return ae.Error() // already names the connection and tenant
	}
	return fmt.Sprintf("connection %q (tenant %q): %v", e.Connection, e.Tenant, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

func (c *Connection) wrap(err error) error {
	return &Error{Connection: c.spec.Name, Tenant: c.spec.Tenant, Err: err}
}

// Inject removes from h the client's Authorization, Proxy-Authorization
// and Cookie headers and every header the connection sets (names compared
// case-insensitively, all values), then sets the credential's headers.
func (c *Connection) Inject(h http.Header, cred Credential) {
	for name := range h {
		for _, s := range c.strip {
			if strings.EqualFold(name, s) {
				delete(h, name)
				break
			}
		}
	}
	if cred.Authorization != "" {
		h["Authorization"] = []string{cred.Authorization}
	}
	for _, hd := range cred.Headers {
		h[hd.Name] = []string{hd.Value}
	}
}

// String is the redacted configuration as JSON.
func (c *Connection) String() string {
	b, _ := c.MarshalJSON()
	return string(b)
}

// MarshalJSON is the redacted configuration plus the kind (admin API): no
// secret, token or header value appears.
func (c *Connection) MarshalJSON() ([]byte, error) {
	type plain Spec
	return json.Marshal(struct {
		plain
		Kind string `json:"kind"`
	}{plain(c.spec.Redacted()), c.kind.String()})
}

// fingerprint hashes the whole spec, secrets included (so a changed secret
// gets new tokens); only the hash is kept.
func fingerprint(s *Spec) string {
	type plain Spec
	b, _ := json.Marshal(plain(*s))
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:16])
}

func sortedUnique(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
