package caddymcp

import (
	"encoding/json"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddymcp/gateway/policy"
)

// This file holds the JSON configuration of the `mcp` app and the
// `mcp_gateway` handler. Every field here is what `caddy adapt` prints and
// what a JSON config sets; the Caddyfile parsers (caddyfile_app.go,
// caddyfile_gateway.go) only produce these structures.

// IssuerConfig is an OAuth authorization server whose access tokens agents
// present.
type IssuerConfig struct {
	// The issuer identifier (the `iss` claim), an https URL (or loopback).
	Issuer string `json:"issuer"`
	// The JWKS URL; default: discovered through RFC 8414 metadata, then
	// OpenID Connect discovery.
	JWKSURI string `json:"jwks_uri,omitempty"`
	// Allowed JWS algorithms; default RS256 RS384 RS512 PS256 ES256 ES384
	// EdDSA. `none` and HS* are never accepted.
	Algorithms []string `json:"algorithms,omitempty"`
	// The claim naming the agent; default client_id, then azp.
	AgentClaim string `json:"agent_claim,omitempty"`
	// The claim holding the agent's groups; default groups.
	GroupsClaim string `json:"groups_claim,omitempty"`
	// When set and present in a token, must equal the server's tenant.
	TenantClaim string `json:"tenant_claim,omitempty"`
	// Clock skew tolerated for exp, nbf and iat; default 30s.
	Leeway caddy.Duration `json:"leeway,omitempty"`
}

// ResourceTokensConfig makes the gateway an issuer of resource tokens.
type ResourceTokensConfig struct {
	// `iss` of minted tokens; the JWKS is served at
	// <issuer>/.well-known/jwks.json.
	Issuer string `json:"issuer,omitempty"`
	// PEM private key (usually a {file.*} placeholder); default: an ES256
	// key generated once and kept in Caddy's storage.
	SigningKey string `json:"signing_key,omitempty"`
	// Lifetime of minted tokens; default 5m.
	TTL caddy.Duration `json:"ttl,omitempty"`
}

// CacheConfig sizes the ristretto caches.
type CacheConfig struct {
	// Budget in bytes for verified tokens and connection tokens; default
	// 64 MiB.
	MaxCost int64 `json:"max_cost,omitempty"`
}

// TenantConfig is a customer: its issuers and connections.
type TenantConfig struct {
	Name string `json:"name"`
	// The tenant's own authorization servers; its servers trust these
	// instead of the global issuers.
	Issuers     []*IssuerConfig     `json:"issuers,omitempty"`
	Connections []*ConnectionConfig `json:"connections,omitempty"`
}

// ConnectionConfig is a tenant's credentials for one downstream system.
// Exactly one of OAuth2, APIKey, Bearer, TokenExchange and ResourceToken is
// set; Headers and ScopeMap may accompany any of them (or stand alone, for a
// connection that only adds headers).
type ConnectionConfig struct {
	Name          string               `json:"name"`
	OAuth2        *OAuth2Config        `json:"oauth2,omitempty"`
	APIKey        *APIKeyConfig        `json:"api_key,omitempty"`
	Bearer        string               `json:"bearer,omitempty"`
	TokenExchange *TokenExchangeConfig `json:"token_exchange,omitempty"`
	ResourceToken *ResourceTokenConfig `json:"resource_token,omitempty"`
	// Extra headers sent upstream (client-sent copies are removed first).
	Headers []HeaderConfig `json:"headers,omitempty"`
	// Gateway scope (glob) -> downstream scopes.
	ScopeMap []ScopeMapping `json:"scope_map,omitempty"`
}

// OAuth2Config is the client credentials grant or, with RefreshToken, the
// refresh token grant.
type OAuth2Config struct {
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

// APIKeyConfig sends a static key in a header.
type APIKeyConfig struct {
	Header string `json:"header"`
	Value  string `json:"value"`
}

// TokenExchangeConfig exchanges the agent's token at the tenant's
// authorization server (RFC 8693).
type TokenExchangeConfig struct {
	TokenURL     string   `json:"token_url"`
	ClientID     string   `json:"client_id,omitempty"`
	ClientSecret string   `json:"client_secret,omitempty"`
	AuthMethod   string   `json:"auth_method,omitempty"`
	Audience     string   `json:"audience,omitempty"`
	Resource     string   `json:"resource,omitempty"`
	Scopes       []string `json:"scopes,omitempty"`
}

// ResourceTokenConfig makes the gateway sign a JWT for the tenant's API.
type ResourceTokenConfig struct {
	Audience string         `json:"audience"`
	TTL      caddy.Duration `json:"ttl,omitempty"`
}

// HeaderConfig is one extra upstream header.
type HeaderConfig struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// ScopeMapping maps a gateway scope (glob) to downstream scopes.
type ScopeMapping struct {
	Scope      string   `json:"scope"`
	Downstream []string `json:"downstream"`
}

// ServerConfig is one logical MCP server behind the gateway.
type ServerConfig struct {
	Name   string `json:"name"`
	Tenant string `json:"tenant"`
	// Public MCP endpoint path (exact); default /mcp.
	Path string `json:"path,omitempty"`
	// Optional host the server is routed by; empty matches any host.
	Host string `json:"host,omitempty"`
	// The upstream's MCP endpoint URL.
	Upstream string `json:"upstream"`
	// The tenant connection whose credentials are injected.
	Connection string `json:"connection,omitempty"`
	// The audience agents' tokens must carry; default scheme://host+path.
	Resource string `json:"resource,omitempty"`
	// scopes_supported in the metadata.
	Scopes []string `json:"scopes,omitempty"`
	// Scopes every request needs.
	Require []string `json:"require,omitempty"`
	// Scopes a tool (by name glob) needs; first match wins.
	Tools []ItemRule `json:"tools,omitempty"`
	// Scopes a resource (by URI glob) needs for resources/read.
	Resources []ItemRule `json:"resources,omitempty"`
	// Scopes a prompt (by name glob) needs for prompts/get.
	Prompts []ItemRule `json:"prompts,omitempty"`
	// Browser Origins accepted besides none and the endpoint's own.
	AllowedOrigins []string `json:"allowed_origins,omitempty"`
	// A public server: no agent token needed.
	Anonymous bool           `json:"anonymous,omitempty"`
	Session   *SessionConfig `json:"session,omitempty"`
	Branding  *Branding      `json:"branding,omitempty"`
	// The reverse_proxy handler that reaches the upstream. Filled from
	// Upstream when absent; the Caddyfile adapter always writes it out.
	ProxyRaw json.RawMessage `json:"reverse_proxy,omitempty" caddy:"namespace=http.handlers inline_key=handler"`
}

// ItemRule gives the scopes a tool, resource or prompt needs.
type ItemRule struct {
	Match  string   `json:"match"`
	Scopes []string `json:"scopes,omitempty"`
}

// SessionConfig bounds MCP sessions.
type SessionConfig struct {
	TTL  caddy.Duration `json:"ttl,omitempty"`
	Idle caddy.Duration `json:"idle,omitempty"`
}

// Branding is shown in the RFC 9728 metadata.
type Branding struct {
	Name          string `json:"name,omitempty"`
	LogoURI       string `json:"logo_uri,omitempty"`
	Documentation string `json:"documentation,omitempty"`
	PolicyURI     string `json:"policy_uri,omitempty"`
	TOSURI        string `json:"tos_uri,omitempty"`
}

// PolicyConfig is the JSON form of a policy; see package policy.
type PolicyConfig = policy.Policy
