package oidctest

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Grant types a Client may be allowed.
const (
	GrantClientCredentials = string(oidc.GrantTypeClientCredentials) // "client_credentials"
	GrantTokenExchange     = string(oidc.GrantTypeTokenExchange)     // "urn:ietf:params:oauth:grant-type:token-exchange"
	GrantRefreshToken      = string(oidc.GrantTypeRefreshToken)      // "refresh_token"
)

// Client is an OAuth client registered at the Provider.
//
// An agent is a Client whose client-credentials tokens carry its Subject, Groups, Tenant and
// Claims; a gateway (or any other confidential client) is a Client with the grants it needs.
type Client struct {
	ID     string
	Secret string
	// GrantTypes allowed; default: client_credentials, token exchange and refresh_token.
	GrantTypes []string
	// Scopes the client may request; empty means any scope. When a client-credentials or
	// token-exchange request names no scope, the token carries all of Scopes.
	Scopes []string
	// Subject is the "sub" of the client's client-credentials tokens; default ID.
	Subject string
	// Groups becomes the "groups" claim (omitted when empty).
	Groups []string
	// Tenant becomes the "tenant" claim (omitted when empty).
	Tenant string
	// Claims are extra private claims put in every access token issued to this client.
	// Registered claims (iss, sub, aud, exp, iat, nbf, jti, client_id) cannot be overridden
	// this way: use Provider.Sign for such tokens.
	Claims map[string]any
	// Audience used when a request names neither "resource" nor "audience"; default: the
	// client ID (what the library does).
	Audience []string
	// TokenTTL is the access token lifetime; default the Provider's (1h).
	TokenTTL time.Duration
}

func (c *Client) allows(grant string) bool {
	if len(c.GrantTypes) == 0 {
		return grant == GrantClientCredentials || grant == GrantTokenExchange || grant == GrantRefreshToken
	}
	return slices.Contains(c.GrantTypes, grant)
}

// grantScopes checks requested scopes against the allowed set. An empty request grants every
// allowed scope.
func (c *Client) grantScopes(requested []string) ([]string, error) {
	if len(requested) == 0 {
		return slices.Clone(c.Scopes), nil
	}
	if len(c.Scopes) == 0 {
		return slices.Clone(requested), nil
	}
	for _, s := range requested {
		if !slices.Contains(c.Scopes, s) {
			return nil, oidc.ErrInvalidScope().WithDescription("scope %q is not allowed for client %q", s, c.ID)
		}
	}
	return slices.Clone(requested), nil
}

// opClient adapts Client to op.Client.
type opClient struct{ c *Client }

func (o opClient) GetID() string                        { return o.c.ID }
func (o opClient) RedirectURIs() []string               { return nil }
func (o opClient) PostLogoutRedirectURIs() []string     { return nil }
func (o opClient) ApplicationType() op.ApplicationType  { return op.ApplicationTypeWeb }
func (o opClient) AuthMethod() oidc.AuthMethod          { return oidc.AuthMethodBasic }
func (o opClient) ResponseTypes() []oidc.ResponseType   { return nil }
func (o opClient) LoginURL(string) string               { return "" }
func (o opClient) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeJWT }
func (o opClient) IDTokenLifetime() time.Duration       { return time.Hour }
func (o opClient) DevMode() bool                        { return true }
func (o opClient) IsScopeAllowed(string) bool           { return true }
func (o opClient) IDTokenUserinfoClaimsAssertion() bool { return false }
func (o opClient) ClockSkew() time.Duration             { return 0 }
func (o opClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (o opClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (o opClient) GrantTypes() []oidc.GrantType {
	var out []oidc.GrantType
	for _, g := range []string{GrantClientCredentials, GrantTokenExchange, GrantRefreshToken} {
		if o.c.allows(g) {
			out = append(out, oidc.GrantType(g))
		}
	}
	return out
}

// ccRequest is the op.TokenRequest of a client-credentials grant.
type ccRequest struct {
	client   *Client
	audience []string
	scopes   []string
}

func (r *ccRequest) GetSubject() string {
	if r.client.Subject != "" {
		return r.client.Subject
	}
	return r.client.ID
}
func (r *ccRequest) GetAudience() []string { return r.audience }
func (r *ccRequest) GetScopes() []string   { return r.scopes }

// refreshGrant is a stored refresh token, and the op.RefreshTokenRequest built from it.
type refreshGrant struct {
	token    string
	clientID string
	subject  string
	audience []string
	scopes   []string
	authTime time.Time
	expires  time.Time
}

func (r *refreshGrant) GetAMR() []string            { return nil }
func (r *refreshGrant) GetAudience() []string       { return r.audience }
func (r *refreshGrant) GetAuthTime() time.Time      { return r.authTime }
func (r *refreshGrant) GetClientID() string         { return r.clientID }
func (r *refreshGrant) GetScopes() []string         { return r.scopes }
func (r *refreshGrant) GetSubject() string          { return r.subject }
func (r *refreshGrant) SetCurrentScopes(s []string) { r.scopes = s }

type issuedToken struct {
	id       string
	clientID string
	subject  string
	audience []string
	scopes   []string
	expires  time.Time
}

// key is a signing key; retireAt (zero: never) ends its listing in the JWKS once it is no
// longer the current key.
type key struct {
	id       string
	alg      jose.SignatureAlgorithm
	priv     crypto.Signer
	retireAt time.Time
}

func (k *key) SignatureAlgorithm() jose.SignatureAlgorithm { return k.alg }
func (k *key) Key() any                                    { return k.priv }
func (k *key) ID() string                                  { return k.id }

type pubKey struct{ k *key }

func (p pubKey) ID() string                         { return p.k.id }
func (p pubKey) Algorithm() jose.SignatureAlgorithm { return p.k.alg }
func (p pubKey) Use() string                        { return "sig" }
func (p pubKey) Key() any                           { return p.k.priv.Public() }

type ctxKey int

const ctxTokenParams ctxKey = 1

// tokenParams carries form parameters the library's request types drop (RFC 8707 resource,
// audience for client credentials) from the HTTP layer to the storage.
type tokenParams struct {
	resource []string
	audience []string
}

// storage implements op.Storage, op.ClientCredentialsStorage, op.TokenExchangeStorage and
// op.CanGetPrivateClaimsFromRequest, in memory. Authorization-code, device and JWT-profile
// flows are not supported (agents here are machines).
type storage struct {
	mu       sync.Mutex
	clients  map[string]*Client
	tokens   map[string]*issuedToken
	refresh  map[string]*refreshGrant
	keys     []*key // last one signs
	ttl      time.Duration
	noRotate bool // refresh tokens are not rotated on use
}

var (
	_ op.Storage                        = (*storage)(nil)
	_ op.ClientCredentialsStorage       = (*storage)(nil)
	_ op.TokenExchangeStorage           = (*storage)(nil)
	_ op.CanGetPrivateClaimsFromRequest = (*storage)(nil)
)

func (s *storage) client(id string) (*Client, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	return c, ok
}

func (s *storage) ttlFor(c *Client) time.Duration {
	if c != nil && c.TokenTTL > 0 {
		return c.TokenTTL
	}
	return s.ttl
}

// --- keys

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.keys) == 0 {
		return nil, errors.New("no signing key")
	}
	return s.keys[len(s.keys)-1], nil
}

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var algs []jose.SignatureAlgorithm
	for _, k := range s.keys {
		if !slices.Contains(algs, k.alg) {
			algs = append(algs, k.alg)
		}
	}
	return algs, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var out []op.Key
	for i, k := range s.keys {
		if i < len(s.keys)-1 && !k.retireAt.IsZero() && !now.Before(k.retireAt) {
			continue
		}
		out = append(out, pubKey{k})
	}
	return out, nil
}

// --- clients

func (s *storage) GetClientByClientID(_ context.Context, clientID string) (op.Client, error) {
	c, ok := s.client(clientID)
	if !ok {
		return nil, fmt.Errorf("unknown client %q", clientID)
	}
	return opClient{c}, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, clientID, clientSecret string) error {
	c, ok := s.client(clientID)
	if !ok || c.Secret != clientSecret {
		return errors.New("wrong client id or secret")
	}
	return nil
}

func (s *storage) ClientCredentials(_ context.Context, clientID, clientSecret string) (op.Client, error) {
	c, ok := s.client(clientID)
	if !ok || c.Secret != clientSecret {
		return nil, errors.New("wrong client id or secret")
	}
	return opClient{c}, nil
}

func (s *storage) ClientCredentialsTokenRequest(ctx context.Context, clientID string, scopes []string) (op.TokenRequest, error) {
	c, ok := s.client(clientID)
	if !ok {
		return nil, errors.New("unknown client")
	}
	granted, err := c.grantScopes(scopes)
	if err != nil {
		return nil, err
	}
	req := &ccRequest{client: c, scopes: granted}
	if p, ok := ctx.Value(ctxTokenParams).(*tokenParams); ok {
		req.audience = append(slices.Clone(p.resource), p.audience...)
	}
	if len(req.audience) == 0 {
		req.audience = slices.Clone(c.Audience)
	}
	return req, nil
}

// --- tokens

func (s *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	t := s.storeToken(req)
	return t.id, t.expires, nil
}

func (s *storage) storeToken(req op.TokenRequest) *issuedToken {
	var clientID string
	switch r := req.(type) {
	case *ccRequest:
		clientID = r.client.ID
	case *refreshGrant:
		clientID = r.clientID
	case op.TokenExchangeRequest:
		clientID = r.GetClientID()
	}
	c, _ := s.client(clientID)
	t := &issuedToken{
		id:       uuid.NewString(),
		clientID: clientID,
		subject:  req.GetSubject(),
		audience: req.GetAudience(),
		scopes:   req.GetScopes(),
		expires:  time.Now().Add(s.ttlFor(c)),
	}
	s.mu.Lock()
	s.tokens[t.id] = t
	s.mu.Unlock()
	return t
}

func (s *storage) CreateAccessAndRefreshTokens(_ context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	t := s.storeToken(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	if current != "" {
		old, ok := s.refresh[current]
		if !ok {
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("unknown refresh token")
		}
		if s.noRotate {
			return t.id, current, t.expires, nil
		}
		delete(s.refresh, current)
		ng := *old
		ng.token = "rt_" + uuid.NewString()
		ng.expires = time.Now().Add(24 * time.Hour)
		s.refresh[ng.token] = &ng
		return t.id, ng.token, t.expires, nil
	}
	g := &refreshGrant{
		token:    "rt_" + uuid.NewString(),
		clientID: t.clientID,
		subject:  t.subject,
		audience: t.audience,
		scopes:   t.scopes,
		authTime: time.Now(),
		expires:  time.Now().Add(24 * time.Hour),
	}
	s.refresh[g.token] = g
	return t.id, g.token, t.expires, nil
}

func (s *storage) issueRefreshToken(clientID, subject string, audience, scopes []string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := &refreshGrant{
		token:    "rt_" + uuid.NewString(),
		clientID: clientID,
		subject:  subject,
		audience: audience,
		scopes:   scopes,
		authTime: time.Now(),
		expires:  time.Now().Add(24 * time.Hour),
	}
	s.refresh[g.token] = g
	return g.token
}

func (s *storage) TokenRequestByRefreshToken(_ context.Context, token string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.refresh[token]
	if !ok || time.Now().After(g.expires) {
		return nil, errors.New("invalid refresh token")
	}
	cp := *g
	return &cp, nil
}

func (s *storage) GetRefreshTokenInfo(_ context.Context, _ string, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.refresh[token]
	if !ok {
		return "", "", op.ErrInvalidRefreshToken
	}
	return g.subject, g.token, nil
}

func (s *storage) RevokeToken(_ context.Context, tokenOrID, _ string, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tokens[tokenOrID]; ok && t.clientID == clientID {
		delete(s.tokens, tokenOrID)
	}
	if g, ok := s.refresh[tokenOrID]; ok && g.clientID == clientID {
		delete(s.refresh, tokenOrID)
	}
	return nil
}

func (s *storage) TerminateSession(context.Context, string, string) error { return nil }

// GetPrivateClaimsFromRequest puts scope, groups, tenant and the client's extra claims in
// client-credentials and refresh-grant access tokens.
func (s *storage) GetPrivateClaimsFromRequest(_ context.Context, req op.TokenRequest, _ []string) (map[string]any, error) {
	var c *Client
	switch r := req.(type) {
	case *ccRequest:
		c = r.client
	case *refreshGrant:
		c, _ = s.client(r.clientID)
	}
	return clientClaims(c, req.GetScopes()), nil
}

func clientClaims(c *Client, scopes []string) map[string]any {
	claims := map[string]any{}
	if c != nil {
		maps.Copy(claims, c.Claims)
		if len(c.Groups) > 0 {
			claims["groups"] = slices.Clone(c.Groups)
		}
		if c.Tenant != "" {
			claims["tenant"] = c.Tenant
		}
	}
	if len(scopes) > 0 {
		claims["scope"] = strings.Join(scopes, " ")
	}
	return claims
}

// --- token exchange (RFC 8693)

func (s *storage) ValidateTokenExchangeRequest(_ context.Context, req op.TokenExchangeRequest) error {
	c, ok := s.client(req.GetClientID())
	if !ok {
		return oidc.ErrInvalidClient()
	}
	if !c.allows(GrantTokenExchange) {
		return oidc.ErrUnauthorizedClient().WithDescription("client may not use token exchange")
	}
	if req.GetRequestedTokenType() == "" {
		req.SetRequestedTokenType(oidc.AccessTokenType)
	}
	if req.GetRequestedTokenType() != oidc.AccessTokenType && req.GetRequestedTokenType() != oidc.JWTTokenType {
		return oidc.ErrInvalidRequest().WithDescription("only access tokens can be requested")
	}
	if req.GetRequestedTokenType() == oidc.JWTTokenType {
		// JWT access tokens are what we issue either way.
		req.SetRequestedTokenType(oidc.AccessTokenType)
	}
	scopes, err := c.grantScopes(req.GetScopes())
	if err != nil {
		return err
	}
	req.SetCurrentScopes(scopes)
	return nil
}

func (s *storage) CreateTokenExchangeRequest(context.Context, op.TokenExchangeRequest) error {
	return nil
}

// GetPrivateClaimsFromTokenExchangeRequest: the exchanged token keeps the subject's tenant and
// groups, records the exchanging client as actor ("act"), and carries the granted scope.
func (s *storage) GetPrivateClaimsFromTokenExchangeRequest(_ context.Context, req op.TokenExchangeRequest) (map[string]any, error) {
	claims := map[string]any{}
	subj := req.GetExchangeSubjectTokenClaims()
	for _, k := range []string{"tenant", "groups"} {
		if v, ok := subj[k]; ok {
			claims[k] = v
		}
	}
	if c, ok := s.client(req.GetClientID()); ok {
		maps.Copy(claims, c.Claims)
	}
	if len(req.GetScopes()) > 0 {
		claims["scope"] = strings.Join(req.GetScopes(), " ")
	}
	claims["act"] = map[string]any{"sub": req.GetClientID()}
	return claims, nil
}

func (s *storage) SetUserinfoFromTokenExchangeRequest(_ context.Context, ui *oidc.UserInfo, req op.TokenExchangeRequest) error {
	ui.Subject = req.GetSubject()
	return nil
}

// --- the rest of op.Storage: not used by machine clients

var errUnsupported = errors.New("not supported by oidctest")

func (s *storage) CreateAuthRequest(context.Context, *oidc.AuthRequest, string) (op.AuthRequest, error) {
	return nil, errUnsupported
}
func (s *storage) AuthRequestByID(context.Context, string) (op.AuthRequest, error) {
	return nil, errUnsupported
}
func (s *storage) AuthRequestByCode(context.Context, string) (op.AuthRequest, error) {
	return nil, errUnsupported
}
func (s *storage) SaveAuthCode(context.Context, string, string) error { return errUnsupported }
func (s *storage) DeleteAuthRequest(context.Context, string) error    { return nil }
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}
func (s *storage) SetUserinfoFromToken(context.Context, *oidc.UserInfo, string, string, string) error {
	return errUnsupported
}

func (s *storage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	s.mu.Lock()
	t, ok := s.tokens[tokenID]
	s.mu.Unlock()
	if !ok || time.Now().After(t.expires) {
		return errors.New("token is not active")
	}
	resp.Subject = t.subject
	resp.ClientID = t.clientID
	resp.Scope = t.scopes
	resp.Audience = t.audience
	resp.Expiration = oidc.FromTime(t.expires)
	return nil
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}
func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errUnsupported
}
func (s *storage) ValidateJWTProfileScopes(_ context.Context, _ string, scopes []string) ([]string, error) {
	return nil, errUnsupported
}
func (s *storage) Health(context.Context) error { return nil }
