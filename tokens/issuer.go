package tokens

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// IssuerSpec configures one trusted authorization server (token issuer).
type IssuerSpec struct {
	// Issuer is the exact "iss" value of its tokens; https, or http on a
	// loopback address (local development, tests).
	Issuer string
	// JWKSURI is the issuer's JWK Set URL. When empty it is discovered:
	// RFC 8414 authorization server metadata first, then OpenID Connect
	// discovery (see discoveryURLs).
	JWKSURI string
	// Algorithms is the allow-list of JWS algorithms. Default:
	// DefaultAlgorithms. "none" and the HMAC algorithms (HS*) are refused.
	Algorithms []string
	// AgentClaim names the claim identifying the agent (OAuth client).
	// Default: client_id, falling back to azp.
	AgentClaim string
	// GroupsClaim names the claim with the agent's groups. Default: groups.
	GroupsClaim string
	// TenantClaim, when set, names a claim that, if present in a token, must
	// equal the tenant of the server the token is presented to.
	TenantClaim string
	// Leeway is the clock skew tolerated for exp, nbf and iat. Default 30s.
	Leeway time.Duration
}

// DefaultAlgorithms is the algorithm allow-list used when IssuerSpec.Algorithms is empty.
var DefaultAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"}

// supportedAlgs are the asymmetric algorithms this package can verify.
var supportedAlgs = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"EdDSA": true,
}

const defaultLeeway = 30 * time.Second

// normalize validates s and fills in defaults.
func (s IssuerSpec) normalize() (IssuerSpec, error) {
	if s.Issuer == "" {
		return s, errors.New("issuer is required")
	}
	if err := checkURL("issuer", s.Issuer); err != nil {
		return s, err
	}
	if u, _ := url.Parse(s.Issuer); u.RawQuery != "" || u.Fragment != "" {
		return s, fmt.Errorf("issuer %q: must not have a query or fragment (RFC 8414 §2)", s.Issuer)
	}
	if s.JWKSURI != "" {
		if err := checkURL("jwks_uri", s.JWKSURI); err != nil {
			return s, err
		}
	}
	if len(s.Algorithms) == 0 {
		s.Algorithms = DefaultAlgorithms
	}
	algs := make([]string, 0, len(s.Algorithms))
	seen := map[string]bool{}
	for _, a := range s.Algorithms {
		switch {
		case strings.EqualFold(a, "none"):
			return s, fmt.Errorf("issuer %s: algorithm %q is never allowed", s.Issuer, a)
		case strings.HasPrefix(strings.ToUpper(a), "HS"):
			return s, fmt.Errorf("issuer %s: symmetric algorithm %q is not allowed (a resource server holds no shared secret)", s.Issuer, a)
		case !supportedAlgs[a]:
			return s, fmt.Errorf("issuer %s: unsupported algorithm %q", s.Issuer, a)
		}
		if !seen[a] {
			seen[a] = true
			algs = append(algs, a)
		}
	}
	s.Algorithms = algs
	if s.GroupsClaim == "" {
		s.GroupsClaim = "groups"
	}
	if s.Leeway == 0 {
		s.Leeway = defaultLeeway
	}
	if s.Leeway < 0 || s.Leeway > 10*time.Minute {
		return s, fmt.Errorf("issuer %s: leeway %s out of range [0, 10m]", s.Issuer, s.Leeway)
	}
	return s, nil
}

// fingerprint identifies everything that influences how a token of this
// issuer is verified and turned into an Identity. Two KeySets with equal
// fingerprints are interchangeable for cached results.
func (s IssuerSpec) fingerprint() string {
	return strings.Join([]string{s.Issuer, s.JWKSURI, strings.Join(s.Algorithms, ","),
		s.AgentClaim, s.GroupsClaim, s.TenantClaim, s.Leeway.String()}, "\x00")
}

// checkURL requires an absolute https URL, or http on a loopback host.
func checkURL(what, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s %q: %v", what, raw, err)
	}
	if u.Host == "" {
		return fmt.Errorf("%s %q: must be an absolute URL", what, raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%s %q: must use https (http only for loopback addresses)", what, raw)
	default:
		return fmt.Errorf("%s %q: must use https", what, raw)
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// discoveryURLs lists the metadata documents tried, in order, to find the
// jwks_uri of issuer, as the MCP authorization spec (2025-11-25) lists them:
//
// issuer with a path component (https://as.example/tenant1):
//  1. https://as.example/.well-known/oauth-authorization-server/tenant1 (RFC 8414 §3.1)
//  2. https://as.example/.well-known/openid-configuration/tenant1 (path insertion)
//  3. https://as.example/tenant1/.well-known/openid-configuration (OIDC Discovery §4, appending)
//
// issuer without a path (https://as.example):
//  1. https://as.example/.well-known/oauth-authorization-server
//  2. https://as.example/.well-known/openid-configuration
func discoveryURLs(issuer string) []string {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	origin := u.Scheme + "://" + u.Host
	if path == "" {
		return []string{
			origin + "/.well-known/oauth-authorization-server",
			origin + "/.well-known/openid-configuration",
		}
	}
	return []string{
		origin + "/.well-known/oauth-authorization-server" + path,
		origin + "/.well-known/openid-configuration" + path,
		origin + path + "/.well-known/openid-configuration",
	}
}
