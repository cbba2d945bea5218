package tokens

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// This file obtains connection tokens from a tenant's authorization server:
// OAuth 2.0 client credentials (RFC 6749 §4.4), the refresh token grant
// (§6) and token exchange (RFC 8693). Errors never carry a secret or a token.

// Grant is an OAuth 2.0 grant type an Acquirer uses.
type Grant string

// Grants an Acquirer supports.
const (
	GrantClientCredentials Grant = "client_credentials"
	GrantRefreshToken      Grant = "refresh_token"
	GrantTokenExchange     Grant = "urn:ietf:params:oauth:grant-type:token-exchange"
)

// Client authentication methods at the token endpoint (RFC 7591 names).
const (
	AuthMethodClientSecretBasic = "client_secret_basic"
	AuthMethodClientSecretPost  = "client_secret_post"
)

// Token type identifiers (RFC 8693 §3).
const (
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeJWT         = "urn:ietf:params:oauth:token-type:jwt"
)

// Defaults of AcquirerConfig.
const (
	DefaultAcquireTimeout   = 10 * time.Second
	DefaultTokenExpiresIn   = 5 * time.Minute
	acqMaxResponseBytes     = 1 << 20
	acqMaxDescriptionLength = 200
)

// ConnectionToken is a credential obtained for a connection. It is shared
// by every request the cache serves it to: treat it as read-only. Its
// String and GoString never show the token.
type ConnectionToken struct {
	AccessToken string
	// TokenType as the server sent it ("Bearer"; "N_A" for a token-exchange
	// result that is not an access token).
	TokenType string
	// IssuedTokenType is RFC 8693's issued_token_type, "" for other grants.
	IssuedTokenType string
	// Scope is the granted scope (space-delimited) if the server said so.
	Scope string
	// IssuedAt is when the response arrived; Expiry is IssuedAt +
	// expires_in (or + the default when the server sent none).
	IssuedAt time.Time
	Expiry   time.Time

	acqAuthz string // "Bearer <AccessToken>", built once
}

// Authorization is the value for the Authorization request header:
// "Bearer <access token>".
func (t *ConnectionToken) Authorization() string {
	if t.acqAuthz != "" {
		return t.acqAuthz
	}
	return "Bearer " + t.AccessToken
}

// String describes the token without revealing it.
func (t *ConnectionToken) String() string {
	if t == nil {
		return "<nil>"
	}
	return fmt.Sprintf("ConnectionToken{type=%s scope=%q expiry=%s token=%s}",
		t.TokenType, t.Scope, t.Expiry.UTC().Format(time.RFC3339), acqHash(t.AccessToken))
}

// GoString is String (so %#v does not print the token either).
func (t *ConnectionToken) GoString() string { return t.String() }

// MarshalJSON never includes the token itself.
func (t *ConnectionToken) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		TokenType string    `json:"token_type,omitempty"`
		Scope     string    `json:"scope,omitempty"`
		Expiry    time.Time `json:"expiry"`
		Hash      string    `json:"token_hash"`
	}{t.TokenType, t.Scope, t.Expiry, acqHash(t.AccessToken)})
}

// AcquirerConfig describes how to obtain tokens for one connection. The
// secrets are plain values, already resolved by the caller.
type AcquirerConfig struct {
	// Connection and Tenant name the connection in errors and stats.
	Connection string
	Tenant     string
	// Grant: client credentials (default), refresh token or token exchange.
	Grant    Grant
	TokenURL string
	ClientID string
	// ClientSecret may be empty for a public client (token exchange).
	ClientSecret string
	// AuthMethod: client_secret_basic (default) or client_secret_post.
	AuthMethod string
	// Scopes requested when an AcquireRequest names none.
	Scopes []string
	// Audience (RFC 8693 audience; also sent on other grants when set) and
	// Resource (RFC 8707) of the requested token.
	Audience string
	Resource string

	// Refresh token grant: the initial refresh token, a loader for the
	// latest stored one (its "" means none stored: RefreshToken is used),
	// and a callback persisting a rotated one. A persist failure does not
	// fail the request (the access token is good): it is counted, passed to
	// OnPersistError, and the new refresh token is kept in memory and used
	// for the next refresh instead of the stored one.
	RefreshToken      string
	LoadRefreshToken  func(ctx context.Context) (string, error)
	StoreRefreshToken func(ctx context.Context, refreshToken string) error
	OnPersistError    func(error)

	// Timeout bounds one token request (default DefaultAcquireTimeout).
	Timeout time.Duration
	// DefaultExpiresIn is the lifetime assumed when a response has no
	// expires_in (default DefaultTokenExpiresIn).
	DefaultExpiresIn time.Duration
	// HTTPClient to use; default a client that does not follow redirects.
	HTTPClient *http.Client
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// AcquireRequest is one token request.
type AcquireRequest struct {
	// Scopes are the downstream scopes to request; nil: the configured ones.
	Scopes []string
	// SubjectToken is the agent's validated access token (token exchange).
	SubjectToken string
}

// Fetcher obtains connection tokens. *Acquirer implements it.
type Fetcher interface {
	Acquire(ctx context.Context, req AcquireRequest) (*ConnectionToken, error)
}

// AcquirerStats are counters for metrics.
type AcquirerStats struct {
	Requests        uint64 // HTTP requests to the token endpoint
	Failures        uint64 // requests that did not yield a token
	Rotations       uint64 // rotated refresh tokens received
	PersistFailures uint64 // rotated refresh tokens that could not be stored
}

// Acquirer obtains tokens for one connection. It is safe for concurrent use;
// refresh grants are serialized (a rotating server invalidates the refresh
// token each one uses).
type Acquirer struct {
	cfg    AcquirerConfig
	client *http.Client

	acqRefreshMu  sync.Mutex
	acqRefresh    string // latest refresh token known here
	acqUnstored   bool   // acqRefresh could not be persisted
	requests      atomic.Uint64
	failures      atomic.Uint64
	rotations     atomic.Uint64
	persistFailed atomic.Uint64
}

// acqDefaultClient never follows redirects: a token request carries
// secrets and must not be replayed to another location.
var acqDefaultClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// NewAcquirer checks the configuration and returns an Acquirer.
func NewAcquirer(cfg AcquirerConfig) (*Acquirer, error) {
	if cfg.Grant == "" {
		cfg.Grant = GrantClientCredentials
	}
	switch cfg.Grant {
	case GrantClientCredentials, GrantTokenExchange:
	case GrantRefreshToken:
		if cfg.RefreshToken == "" && cfg.LoadRefreshToken == nil {
			return nil, fmt.Errorf("tokens: connection %q: refresh token grant without a refresh token", cfg.Connection)
		}
	default:
		return nil, fmt.Errorf("tokens: connection %q: unsupported grant %q", cfg.Connection, cfg.Grant)
	}
	if cfg.AuthMethod == "" {
		cfg.AuthMethod = AuthMethodClientSecretBasic
	}
	if cfg.AuthMethod != AuthMethodClientSecretBasic && cfg.AuthMethod != AuthMethodClientSecretPost {
		return nil, fmt.Errorf("tokens: connection %q: unsupported auth method %q", cfg.Connection, cfg.AuthMethod)
	}
	u, err := url.Parse(cfg.TokenURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("tokens: connection %q: token URL must be an absolute http(s) URL", cfg.Connection)
	}
	if u.User != nil {
		return nil, fmt.Errorf("tokens: connection %q: token URL must not carry credentials", cfg.Connection)
	}
	if cfg.ClientID == "" && cfg.Grant != GrantTokenExchange {
		return nil, fmt.Errorf("tokens: connection %q: client_id is required", cfg.Connection)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultAcquireTimeout
	}
	if cfg.DefaultExpiresIn <= 0 {
		cfg.DefaultExpiresIn = DefaultTokenExpiresIn
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Scopes = append([]string(nil), cfg.Scopes...)
	a := &Acquirer{cfg: cfg, client: cfg.HTTPClient, acqRefresh: cfg.RefreshToken}
	if a.client == nil {
		a.client = acqDefaultClient
	}
	return a, nil
}

// Connection is the connection name the Acquirer serves.
func (a *Acquirer) Connection() string { return a.cfg.Connection }

// Grant is the grant the Acquirer uses.
func (a *Acquirer) Grant() Grant { return a.cfg.Grant }

// Timeout is the bound of one token request.
func (a *Acquirer) Timeout() time.Duration { return a.cfg.Timeout }

// Stats returns a snapshot of the counters.
func (a *Acquirer) Stats() AcquirerStats {
	return AcquirerStats{
		Requests: a.requests.Load(), Failures: a.failures.Load(),
		Rotations: a.rotations.Load(), PersistFailures: a.persistFailed.Load(),
	}
}

// Acquire requests a token. Errors are *AcquireError.
func (a *Acquirer) Acquire(ctx context.Context, req AcquireRequest) (*ConnectionToken, error) {
	scopes := req.Scopes
	if scopes == nil {
		scopes = a.cfg.Scopes
	}
	form := url.Values{"grant_type": {string(a.cfg.Grant)}}
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	if a.cfg.Audience != "" {
		form.Set("audience", a.cfg.Audience)
	}
	if a.cfg.Resource != "" {
		form.Set("resource", a.cfg.Resource)
	}
	switch a.cfg.Grant {
	case GrantTokenExchange:
		if req.SubjectToken == "" {
			return nil, a.fail(&AcquireError{Reason: "no subject token for token exchange"}, nil)
		}
		form.Set("subject_token", req.SubjectToken)
		form.Set("subject_token_type", TokenTypeAccessToken)
		form.Set("requested_token_type", TokenTypeAccessToken)
		return a.post(ctx, form, req.SubjectToken)
	case GrantRefreshToken:
		return a.refresh(ctx, form)
	}
	return a.post(ctx, form)
}

// refresh runs the refresh grant with the latest refresh token, persisting
// a rotated one. If the server refuses the token as invalid_grant and the
// store holds a different one (another instance rotated it), it retries
// once with that.
func (a *Acquirer) refresh(ctx context.Context, form url.Values) (*ConnectionToken, error) {
	a.acqRefreshMu.Lock()
	defer a.acqRefreshMu.Unlock()
	rt, err := a.acqCurrentRefresh(ctx)
	if err != nil {
		return nil, err
	}
	form.Set("refresh_token", rt)
	tok, newRT, err := a.exchange(ctx, form, rt)
	var ae *AcquireError
	if err != nil && errors.As(err, &ae) && ae.Code == "invalid_grant" && a.cfg.LoadRefreshToken != nil {
		if stored, lerr := a.cfg.LoadRefreshToken(ctx); lerr == nil && stored != "" && stored != rt {
			a.acqRefresh, a.acqUnstored, rt = stored, false, stored
			form.Set("refresh_token", rt)
			tok, newRT, err = a.exchange(ctx, form, rt)
		}
	}
	if err != nil {
		return nil, err
	}
	if newRT != "" && newRT != rt {
		a.rotations.Add(1)
		a.acqRefresh = newRT
		a.acqUnstored = false
		if a.cfg.StoreRefreshToken != nil {
			if perr := a.cfg.StoreRefreshToken(ctx, newRT); perr != nil {
				a.acqUnstored = true
				a.persistFailed.Add(1)
				if a.cfg.OnPersistError != nil {
					a.cfg.OnPersistError(fmt.Errorf("tokens: connection %q (tenant %q): storing the rotated refresh token: %s",
						a.cfg.Connection, a.cfg.Tenant, acqScrub(perr.Error(), a.cfg.ClientSecret, rt, newRT)))
				}
			}
		}
	}
	return tok, nil
}

// acqCurrentRefresh picks the refresh token to use: the stored one unless
// the latest one known here could not be stored.
func (a *Acquirer) acqCurrentRefresh(ctx context.Context) (string, error) {
	if a.cfg.LoadRefreshToken != nil && !a.acqUnstored {
		stored, err := a.cfg.LoadRefreshToken(ctx)
		if err != nil && a.acqRefresh == "" {
			return "", a.fail(&AcquireError{Reason: "loading the refresh token: " + acqScrub(err.Error(), a.cfg.ClientSecret, a.acqRefresh)}, nil)
		}
		if err == nil && stored != "" {
			a.acqRefresh = stored
		}
	}
	if a.acqRefresh == "" {
		return "", a.fail(&AcquireError{Reason: "no refresh token"}, nil)
	}
	return a.acqRefresh, nil
}

func (a *Acquirer) post(ctx context.Context, form url.Values, secrets ...string) (*ConnectionToken, error) {
	tok, _, err := a.exchange(ctx, form, secrets...)
	return tok, err
}

// acqTokenResponse is a token endpoint's success or error answer.
type acqTokenResponse struct {
	AccessToken     string          `json:"access_token"`
	TokenType       string          `json:"token_type"`
	ExpiresIn       json.RawMessage `json:"expires_in"`
	RefreshToken    string          `json:"refresh_token"`
	Scope           string          `json:"scope"`
	IssuedTokenType string          `json:"issued_token_type"`
	Error           string          `json:"error"`
	ErrorDesc       string          `json:"error_description"`
}

// exchange sends one token request; extra are values to scrub from any
// error text besides the client secret.
func (a *Acquirer) exchange(ctx context.Context, form url.Values, extra ...string) (*ConnectionToken, string, error) {
	secrets := append([]string{a.cfg.ClientSecret}, extra...)
	if a.cfg.AuthMethod == AuthMethodClientSecretPost || a.cfg.ClientSecret == "" {
		if a.cfg.ClientID != "" {
			form.Set("client_id", a.cfg.ClientID)
		}
		if a.cfg.ClientSecret != "" {
			form.Set("client_secret", a.cfg.ClientSecret)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, "", a.fail(&AcquireError{Reason: "building the token request"}, nil)
	}
	hreq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	hreq.Header.Set("Accept", "application/json")
	if a.cfg.AuthMethod == AuthMethodClientSecretBasic && a.cfg.ClientSecret != "" {
		// RFC 6749 §2.3.1: both parts form-urlencoded before Basic encoding.
		hreq.SetBasicAuth(url.QueryEscape(a.cfg.ClientID), url.QueryEscape(a.cfg.ClientSecret))
	}
	a.requests.Add(1)
	start := a.cfg.Now()
	resp, err := a.client.Do(hreq)
	if err != nil {
		ae := &AcquireError{Reason: "token request failed"}
		if ctx.Err() == context.DeadlineExceeded {
			ae.Timeout = true
			ae.Reason = "token request timed out after " + a.cfg.Timeout.String()
		} else {
			ae.Reason += ": " + acqScrub(acqTransportError(err), secrets...)
		}
		return nil, "", a.fail(ae, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, acqMaxResponseBytes+1))
	if err != nil {
		ae := &AcquireError{Status: resp.StatusCode, Reason: "reading the token response failed"}
		if ctx.Err() == context.DeadlineExceeded {
			ae.Timeout = true
			ae.Reason = "token request timed out after " + a.cfg.Timeout.String()
		}
		return nil, "", a.fail(ae, err)
	}
	if len(body) > acqMaxResponseBytes {
		return nil, "", a.fail(&AcquireError{Status: resp.StatusCode, Reason: "token response too large"}, nil)
	}
	var tr acqTokenResponse
	jerr := json.Unmarshal(body, &tr)
	if resp.StatusCode != http.StatusOK {
		ae := &AcquireError{Status: resp.StatusCode, Reason: "token endpoint refused the request"}
		if jerr == nil {
			ae.Code = acqClean(tr.Error, 64)
			ae.Description = acqScrub(acqClean(tr.ErrorDesc, acqMaxDescriptionLength), secrets...)
		}
		return nil, "", a.fail(ae, nil)
	}
	if jerr != nil {
		return nil, "", a.fail(&AcquireError{Status: resp.StatusCode, Reason: "token response is not JSON"}, nil)
	}
	if tr.AccessToken == "" {
		return nil, "", a.fail(&AcquireError{Status: resp.StatusCode, Code: acqClean(tr.Error, 64), Reason: "token response has no access_token"}, nil)
	}
	tt := tr.TokenType
	switch {
	case tt == "" || strings.EqualFold(tt, "bearer"):
		tt = "Bearer"
	case tt == "N_A" && a.cfg.Grant == GrantTokenExchange:
	default:
		return nil, "", a.fail(&AcquireError{Status: resp.StatusCode, Reason: "unsupported token_type " + strconv.Quote(acqClean(tt, 32))}, nil)
	}
	life, ok := acqExpiresIn(tr.ExpiresIn)
	if !ok {
		life = a.cfg.DefaultExpiresIn
	}
	if life <= 0 {
		return nil, "", a.fail(&AcquireError{Status: resp.StatusCode, Reason: "token response has a non-positive expires_in"}, nil)
	}
	tok := &ConnectionToken{
		AccessToken:     tr.AccessToken,
		TokenType:       tt,
		IssuedTokenType: tr.IssuedTokenType,
		Scope:           tr.Scope,
		IssuedAt:        start,
		Expiry:          start.Add(life),
	}
	tok.acqAuthz = "Bearer " + tok.AccessToken
	return tok, tr.RefreshToken, nil
}

// acqExpiresIn reads expires_in as a JSON number or numeric string.
func acqExpiresIn(raw json.RawMessage) (time.Duration, bool) {
	s := string(bytes.Trim(bytes.TrimSpace(raw), `"`))
	if s == "" || s == "null" {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != f || f > 10*365*24*3600 {
		return 0, false
	}
	return time.Duration(f * float64(time.Second)), true
}

// fail fills in the connection, counts the failure and returns the error.
func (a *Acquirer) fail(ae *AcquireError, cause error) error {
	a.failures.Add(1)
	ae.Connection = a.cfg.Connection
	ae.Tenant = a.cfg.Tenant
	ae.Grant = a.cfg.Grant
	ae.cause = cause
	return ae
}

// AcquireError is a failed token request. It names the connection, the HTTP
// status and OAuth error code; it never contains a secret or token (the
// server's error_description is cut short and scrubbed of every secret the
// request carried).
type AcquireError struct {
	Connection  string
	Tenant      string
	Grant       Grant
	Status      int    // HTTP status of the answer, 0 if there was none
	Code        string // OAuth error code ("invalid_client", ...), "" if none
	Description string // the server's error_description, shortened and scrubbed
	Timeout     bool   // the request hit the timeout
	Reason      string // what went wrong, in words
	cause       error
}

func (e *AcquireError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "connection %q", e.Connection)
	if e.Tenant != "" {
		fmt.Fprintf(&b, " (tenant %q)", e.Tenant)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	}
	if e.Code != "" {
		b.WriteString(" ")
		b.WriteString(e.Code)
	}
	if e.Description != "" {
		fmt.Fprintf(&b, " (%s)", e.Description)
	}
	return b.String()
}

// Unwrap returns the transport error, if any (context.DeadlineExceeded for
// a timeout, for example).
func (e *AcquireError) Unwrap() error { return e.cause }

// acqTransportError describes a transport error without echoing request
// data: *url.Error is reduced to its inner error.
func acqTransportError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// acqScrub replaces every occurrence of a secret (and its form encoding)
// with "[redacted]".
func acqScrub(s string, secrets ...string) string {
	for _, sec := range secrets {
		if len(sec) < 4 {
			continue
		}
		s = strings.ReplaceAll(s, sec, "[redacted]")
		if q := url.QueryEscape(sec); q != sec {
			s = strings.ReplaceAll(s, q, "[redacted]")
		}
	}
	return s
}

// acqClean keeps printable characters and cuts to max bytes.
func acqClean(s string, max int) string {
	if len(s) > max {
		s = s[:max]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// acqHash is a short hex prefix of the SHA-256 of s, safe to log.
func acqHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:6])
}
