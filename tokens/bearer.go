package tokens

import (
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// MaxTokenSize is the largest token (in bytes) accepted. Larger tokens are
// refused with invalid_token before any parsing.
const MaxTokenSize = 8 << 10

// BearerToken extracts the access token from r per RFC 6750, accepting only
// the Authorization request header field (§2.1):
//
//   - no Authorization header, or one with another scheme (e.g. Basic):
//     ErrNoToken (=> 401 with a challenge and no error code);
//   - a token in the query string (access_token parameter, §2.3) or a
//     form-encoded body (§2.2): *Error invalid_request (400); the gateway
//     supports the header method only (bearer_methods_supported ["header"]);
//   - more than one Authorization header, "Bearer" without a token, more than
//     one token, or characters outside b64token: *Error invalid_request (400);
//   - a token longer than MaxTokenSize: *Error invalid_token (401).
//
// The scheme is matched case-insensitively and separated from the token by
// one or more spaces (credentials = "Bearer" 1*SP b64token).
func BearerToken(r *http.Request) (string, error) {
	if r.URL != nil && r.URL.RawQuery != "" && queryHasAccessToken(r.URL.RawQuery) {
		return "", errTokenInQuery
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && isFormContentType(ct) {
		return "", errTokenInForm
	}
	vals := r.Header.Values("Authorization")
	switch len(vals) {
	case 0:
		return "", ErrNoToken
	case 1:
	default:
		return "", errMultipleAuth
	}
	return parseAuthorization(vals[0])
}

var (
	errTokenInQuery  = invalidRequest("access tokens are accepted only in the Authorization header, not in the query string")
	errTokenInForm   = invalidRequest("access tokens are accepted only in the Authorization header, not in a form body")
	errMultipleAuth  = invalidRequest("multiple Authorization headers")
	errMalformedAuth = invalidRequest("malformed Authorization header")
)

// parseAuthorization parses one Authorization header value.
func parseAuthorization(v string) (string, error) {
	// Field values arrive with surrounding whitespace trimmed by net/http;
	// trim here too for callers that build headers by hand.
	v = strings.Trim(v, " \t")
	if v == "" {
		return "", errMalformedAuth
	}
	i := strings.IndexByte(v, ' ')
	scheme := v
	if i >= 0 {
		scheme = v[:i]
	}
	if !strings.EqualFold(scheme, "Bearer") {
		if i < 0 && len(v) > len("Bearer") && strings.EqualFold(v[:len("Bearer")], "Bearer") {
			// "Bearer<junk>" without a separating space.
			return "", errMalformedAuth
		}
		// Another authentication scheme: no bearer token was presented.
		return "", ErrNoToken
	}
	if i < 0 {
		return "", errMalformedAuth // "Bearer" alone
	}
	tok := strings.TrimLeft(v[i:], " ")
	if tok == "" {
		return "", errMalformedAuth
	}
	if len(tok) > MaxTokenSize {
		return "", errTooLarge
	}
	if !isB64Token(tok) {
		return "", errMalformedAuth
	}
	return tok, nil
}

// isB64Token reports whether s matches RFC 6750's
// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	n := len(s)
	for n > 0 && s[n-1] == '=' {
		n--
	}
	if n == 0 {
		return false
	}
	for i := 0; i < n; i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		default:
			return false
		}
	}
	return true
}

func queryHasAccessToken(q string) bool {
	for q != "" {
		var part string
		part, q, _ = strings.Cut(q, "&")
		key, _, _ := strings.Cut(part, "=")
		if key == "access_token" {
			return true
		}
		if strings.ContainsAny(key, "%+") {
			if k, err := url.QueryUnescape(key); err == nil && k == "access_token" {
				return true
			}
		}
	}
	return false
}

func isFormContentType(ct string) bool {
	const form = "application/x-www-form-urlencoded"
	ct = strings.TrimLeft(ct, " \t")
	if len(ct) < len(form) || !strings.EqualFold(ct[:len(form)], form) {
		return false // cheap path: no allocation for application/json etc.
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/x-www-form-urlencoded"
}
