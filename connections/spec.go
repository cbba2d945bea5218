// Package connections turns a tenant's connection configuration into the
// credentials injected into requests to an upstream (SPEC step 7): an API
// key, a static bearer token, an OAuth 2.0 token (client credentials or
// refresh grant), a token obtained by RFC 8693 token exchange of the agent's
// token, or a resource token the gateway signs, plus extra headers. The
// agent's own Authorization and Cookie headers, and client-sent copies of
// every header the connection sets, never reach the upstream.
//
// The package is plain Go (no Caddy imports): the caller resolves secrets,
// provides the shared token cache and minter, and persists rotated refresh
// tokens.
package connections

import (
	"encoding/json"
	"time"
)

// Spec is a connection's configuration, mirroring the JSON config of a
// tenant's `connection` block. Secrets are plain values, already resolved.
// At most one of APIKey, Bearer, OAuth2, TokenExchange and ResourceToken is
// set; Headers and ScopeMap may accompany any (or stand alone).
type Spec struct {
	Name          string         `json:"name"`
	Tenant        string         `json:"tenant"`
	APIKey        *APIKey        `json:"api_key,omitempty"`
	Bearer        string         `json:"bearer,omitempty"`
	OAuth2        *OAuth2        `json:"oauth2,omitempty"`
	TokenExchange *TokenExchange `json:"token_exchange,omitempty"`
	ResourceToken *ResourceToken `json:"resource_token,omitempty"`
	Headers       []Header       `json:"headers,omitempty"`
	ScopeMap      []ScopeMapping `json:"scope_map,omitempty"`
}

// APIKey sends a static key in a header.
type APIKey struct {
	Header string `json:"header"`
	Value  string `json:"value"`
}

// OAuth2 is the client credentials grant or, with RefreshToken, the refresh
// token grant.
type OAuth2 struct {
	TokenURL     string `json:"token_url"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret,omitempty"`
	// client_secret_basic (default) or client_secret_post.
	AuthMethod   string   `json:"auth_method,omitempty"`
	RefreshToken string   `json:"refresh_token,omitempty"`
	Scopes       []string `json:"scopes,omitempty"`
	Audience     string   `json:"audience,omitempty"`
	Resource     string   `json:"resource,omitempty"`
}

// TokenExchange exchanges the agent's token at the tenant's authorization
// server (RFC 8693).
type TokenExchange struct {
	TokenURL     string   `json:"token_url"`
	ClientID     string   `json:"client_id,omitempty"`
	ClientSecret string   `json:"client_secret,omitempty"`
	AuthMethod   string   `json:"auth_method,omitempty"`
	Audience     string   `json:"audience,omitempty"`
	Resource     string   `json:"resource,omitempty"`
	Scopes       []string `json:"scopes,omitempty"`
}

// ResourceToken makes the gateway sign a JWT for the tenant's API.
type ResourceToken struct {
	Audience string        `json:"audience"`
	TTL      time.Duration `json:"ttl,omitempty"` // 0: the Minter's default
}

// Header is one extra upstream header (or an injected credential header).
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// ScopeMapping maps a gateway scope glob (`*` any run of characters, `?` one
// character) to downstream scopes.
type ScopeMapping struct {
	Scope      string   `json:"scope"`
	Downstream []string `json:"downstream"`
}

// Redacted is what replaces a secret in Redacted, String and MarshalJSON.
const Redacted = "[redacted]"

func redact(s string) string {
	if s == "" {
		return ""
	}
	return Redacted
}

// Redacted returns a copy with every secret replaced by "[redacted]": the
// API key value, the bearer token, client secrets, the refresh token and
// the values of extra headers (which may carry secrets too).
func (s Spec) Redacted() Spec {
	r := s
	if s.APIKey != nil {
		r.APIKey = &APIKey{Header: s.APIKey.Header, Value: redact(s.APIKey.Value)}
	}
	r.Bearer = redact(s.Bearer)
	if s.OAuth2 != nil {
		o := *s.OAuth2
		o.ClientSecret = redact(o.ClientSecret)
		o.RefreshToken = redact(o.RefreshToken)
		r.OAuth2 = &o
	}
	if s.TokenExchange != nil {
		te := *s.TokenExchange
		te.ClientSecret = redact(te.ClientSecret)
		r.TokenExchange = &te
	}
	if s.ResourceToken != nil {
		rt := *s.ResourceToken
		r.ResourceToken = &rt
	}
	if s.Headers != nil {
		r.Headers = make([]Header, len(s.Headers))
		for i, h := range s.Headers {
			r.Headers[i] = Header{Name: h.Name, Value: redact(h.Value)}
		}
	}
	return r
}

// String is the redacted spec as JSON.
func (s Spec) String() string {
	type plain Spec // no methods: no recursion
	b, err := json.Marshal(plain(s.Redacted()))
	if err != nil {
		return "connection " + s.Name
	}
	return string(b)
}

// GoString is String, so %#v does not print secrets either.
func (s Spec) GoString() string { return s.String() }
