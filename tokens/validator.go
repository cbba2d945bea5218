package tokens

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
	"go.uber.org/zap"
)

// Requirements are what one protected server demands of a token.
type Requirements struct {
	// Issuers trusted by this server. A token is verified only with the
	// keys of the KeySet whose issuer equals the token's iss.
	Issuers []*KeySet
	// Audience is the server's resource identifier (RFC 8707 / RFC 9728
	// "resource"); the token's aud must contain it exactly. Required: an
	// empty Audience refuses every token.
	Audience string
	// Tenant is the server's tenant. When the issuer has a TenantClaim and a
	// token carries that claim, it must equal Tenant.
	Tenant string
}

// Identity is what a verified token says about its bearer. Identities may
// be shared between requests through the cache: treat them, including
// Claims and the slices, as read-only.
type Identity struct {
	Issuer  string
	Subject string // sub
	Agent   string // the AgentClaim; by default client_id, then azp
	Tenant  string // the TenantClaim's value, "" if not configured or absent
	Groups  []string
	Scopes  []string // scope (space-delimited string), else scp (array or string)
	// Audience is the token's aud, always as a list.
	Audience []string
	Expiry   time.Time
	// Claims holds every claim of the token payload as decoded by
	// encoding/json (numbers are float64).
	Claims map[string]any
	// TokenHash is a short hex prefix of the token's SHA-256, safe to log.
	TokenHash string
}

// Validator validates bearer tokens against per-server Requirements.
type Validator struct {
	cache *Cache
	log   *zap.Logger
	now   func() time.Time

	verifications atomic.Uint64
}

// ValidatorStats are counters for metrics.
type ValidatorStats struct {
	// Verifications counts signature verifications performed (cache misses
	// that got as far as checking a signature).
	Verifications uint64
}

// NewValidator returns a Validator. cache may be nil (no caching); logger
// may be nil.
func NewValidator(cache *Cache, logger *zap.Logger) *Validator {
	if logger == nil {
		logger = zap.NewNop()
	}
	return &Validator{cache: cache, log: logger, now: time.Now}
}

// Stats returns a snapshot of the counters.
func (v *Validator) Stats() ValidatorStats {
	return ValidatorStats{Verifications: v.verifications.Load()}
}

// verifiers are jwx's stateless verifiers, one per supported algorithm.
var verifiers = func() map[string]jws.Verifier {
	m := make(map[string]jws.Verifier, len(supportedAlgs))
	for a := range supportedAlgs {
		vf, err := jws.NewVerifier(jwa.SignatureAlgorithm(a))
		if err != nil {
			panic("tokens: no jwx verifier for " + a)
		}
		m[a] = vf
	}
	return m
}()

var b64 = base64.RawURLEncoding.Strict()

// Validate checks a raw compact JWS access token against req and returns
// the bearer's Identity. Failures are *Error (401 invalid_token) — or
// ErrNoToken for an empty raw. Validation order: size; cache hit (then only
// iss/aud/exp/tenant are re-checked against req); else header (alg, kid, no
// crit), unverified payload to pick the KeySet by iss, alg allow-list, the
// time, audience and tenant claims, and finally the signature with a key of
// that issuer whose kid and type match (an unknown kid triggers one
// rate-limited JWKS refresh). Only verified tokens are cached.
func (v *Validator) Validate(ctx context.Context, raw string, req *Requirements) (*Identity, error) {
	if raw == "" {
		return nil, ErrNoToken
	}
	if len(raw) > MaxTokenSize {
		return nil, errTooLarge
	}
	if req == nil || req.Audience == "" || len(req.Issuers) == 0 {
		return nil, errNoResource
	}
	h := sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
	now := v.now()
	if v.cache != nil {
		if e := v.cache.get(&h); e != nil {
			return e.check(req, now)
		}
	}
	return v.verify(ctx, raw, &h, req, now)
}

var errNoResource = invalidToken("resource not configured")

// check re-validates a cached entry against this request's requirements.
func (e *entry) check(req *Requirements, now time.Time) (*Identity, error) {
	trusted := false
	for _, ks := range req.Issuers {
		if ks == e.ks || ks.fp == e.fp {
			trusted = true
			break
		}
	}
	if !trusted {
		return nil, errUnknownIssuer
	}
	if now.After(e.exp.Add(e.leeway)) {
		return nil, errExpired
	}
	if !containsString(e.id.Audience, req.Audience) {
		return nil, errAudience
	}
	if e.tenant != "" && req.Tenant != "" && e.tenant != req.Tenant {
		return nil, errTenant
	}
	return e.id, nil
}

type joseHeader struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Crit json.RawMessage `json:"crit"`
	B64  json.RawMessage `json:"b64"`
}

func (v *Validator) verify(ctx context.Context, raw string, h *[32]byte, req *Requirements, now time.Time) (*Identity, error) {
	// Compact serialization: exactly three segments, signature non-empty.
	d1 := strings.IndexByte(raw, '.')
	if d1 <= 0 {
		return nil, errMalformed
	}
	d2 := strings.IndexByte(raw[d1+1:], '.')
	if d2 <= 0 {
		return nil, errMalformed
	}
	d2 += d1 + 1
	if d2 == len(raw)-1 || strings.IndexByte(raw[d2+1:], '.') >= 0 {
		return nil, errMalformed
	}

	// Header.
	hb, err := b64.DecodeString(raw[:d1])
	if err != nil {
		return nil, errMalformed
	}
	var hdr joseHeader
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return nil, errMalformed
	}
	// RFC 7515 §4.1.11: no critical extension is understood here, and
	// RFC 7797 (b64:false) changes what is signed: refuse both.
	if hdr.Crit != nil || hdr.B64 != nil {
		return nil, errCritical
	}
	if hdr.Alg == "" {
		return nil, errMalformed
	}

	// Unverified payload: needed to pick the issuer whose keys verify it.
	pb, err := b64.DecodeString(raw[d1+1 : d2])
	if err != nil {
		return nil, errMalformed
	}
	var claims map[string]any
	if err := json.Unmarshal(pb, &claims); err != nil || claims == nil {
		return nil, errMalformed
	}
	iss, _ := claims["iss"].(string)
	if iss == "" {
		return nil, errUnknownIssuer
	}
	var ks *KeySet
	for _, k := range req.Issuers {
		if k.spec.Issuer == iss {
			ks = k
			break
		}
	}
	if ks == nil {
		return nil, errUnknownIssuer
	}
	if !ks.algs[hdr.Alg] {
		return nil, errAlgNotAllowed
	}

	// Claims (checked before the signature: cheaper to refuse).
	id := &Identity{Issuer: iss, Claims: claims}
	leeway := ks.spec.Leeway
	exp, ok, err := numericDate(claims, "exp")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errNoExp
	}
	if now.After(exp.Add(leeway)) {
		return nil, errExpired
	}
	id.Expiry = exp
	if nbf, ok, err := numericDate(claims, "nbf"); err != nil {
		return nil, err
	} else if ok && now.Add(leeway).Before(nbf) {
		return nil, errNotYetValid
	}
	if iat, ok, err := numericDate(claims, "iat"); err != nil {
		return nil, err
	} else if ok && now.Add(leeway).Before(iat) {
		return nil, errIssuedInFuture
	}
	switch a := claims["aud"].(type) {
	case nil:
		return nil, errNoAudience
	case string:
		id.Audience = []string{a}
	default:
		if id.Audience, ok = stringList(a); !ok {
			return nil, errClaimType
		}
	}
	if len(id.Audience) == 0 {
		return nil, errNoAudience
	}
	if !containsString(id.Audience, req.Audience) {
		return nil, errAudience
	}
	if tc := ks.spec.TenantClaim; tc != "" {
		if t, present := claims[tc]; present {
			ts, ok := t.(string)
			if !ok {
				return nil, errClaimType
			}
			if req.Tenant != "" && ts != req.Tenant {
				return nil, errTenant
			}
			id.Tenant = ts
		}
	}
	if err := fillIdentity(id, claims, &ks.spec); err != nil {
		return nil, err
	}

	// Signature.
	sig, err := b64.DecodeString(raw[d2+1:])
	if err != nil {
		return nil, errMalformed
	}
	key, kerr := v.findKey(ctx, ks, hdr.Kid, hdr.Alg)
	if kerr != nil {
		return nil, kerr
	}
	v.verifications.Add(1)
	signingInput := unsafe.Slice(unsafe.StringData(raw), d2) // read-only
	verifier := verifiers[hdr.Alg]
	verified := false
	for _, k := range key {
		if verifier.Verify(signingInput, sig, k.raw) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, errSignature
	}

	id.TokenHash = hex.EncodeToString(h[:6])
	if v.cache != nil {
		e := &entry{hash: *h, ks: ks, fp: ks.fp, id: id, exp: exp, leeway: leeway, tenant: id.Tenant}
		v.cache.set(e, int64(len(pb)), now)
	}
	return id, nil
}

// findKey returns the keys of ks that may verify a signature by kid with
// alg. When the kid is unknown (or, without a kid, no key fits), it asks
// for one JWKS refresh (rate-limited, shared by concurrent callers).
func (v *Validator) findKey(ctx context.Context, ks *KeySet, kid, alg string) ([]*verifyKey, error) {
	keys, known := candidates(ks.table.Load(), kid, alg)
	if len(keys) > 0 {
		return keys, nil
	}
	if known {
		// The kid exists but is of another type or algorithm: no refresh.
		return nil, errKeyMismatch
	}
	if err := ks.refresh(ctx, false); err != nil {
		return nil, invalidTokenCause(errUnknownKey.Description, err)
	}
	keys, known = candidates(ks.table.Load(), kid, alg)
	if len(keys) > 0 {
		return keys, nil
	}
	if known {
		return nil, errKeyMismatch
	}
	return nil, errUnknownKey
}

var errKeyMismatch = invalidToken("signing key does not match the algorithm")

func candidates(t *keyTable, kid, alg string) (keys []*verifyKey, known bool) {
	list := t.all
	if kid != "" {
		list = t.byKid[kid]
		known = len(list) > 0
	}
	// Fast path: the common single key for a kid.
	if len(list) == 1 && list[0].compatible(alg) {
		return list, known
	}
	for _, k := range list {
		if k.compatible(alg) {
			keys = append(keys, k)
		}
	}
	return keys, known
}

// fillIdentity extracts sub, agent, groups and scopes.
func fillIdentity(id *Identity, claims map[string]any, spec *IssuerSpec) error {
	var ok bool
	if s, present := claims["sub"]; present {
		if id.Subject, ok = s.(string); !ok {
			return errClaimType
		}
	}
	agentClaims := []string{"client_id", "azp"}
	if spec.AgentClaim != "" {
		agentClaims = []string{spec.AgentClaim}
	}
	for _, c := range agentClaims {
		if a, present := claims[c]; present {
			if id.Agent, ok = a.(string); !ok {
				return errClaimType
			}
			if id.Agent != "" {
				break
			}
		}
	}
	if g, present := claims[spec.GroupsClaim]; present {
		switch g := g.(type) {
		case string:
			id.Groups = []string{g}
		default:
			if id.Groups, ok = stringList(g); !ok {
				return errClaimType
			}
		}
	}
	for _, c := range [...]string{"scope", "scp"} {
		s, present := claims[c]
		if !present {
			continue
		}
		switch s := s.(type) {
		case string:
			id.Scopes = strings.Fields(s)
		default:
			if id.Scopes, ok = stringList(s); !ok {
				return errClaimType
			}
		}
		break
	}
	return nil
}

// numericDate reads a NumericDate claim (RFC 7519 §2).
func numericDate(claims map[string]any, name string) (time.Time, bool, error) {
	v, present := claims[name]
	if !present {
		return time.Time{}, false, nil
	}
	f, ok := v.(float64)
	if !ok || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return time.Time{}, false, errClaimType
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

func stringList(v any) ([]string, bool) {
	arr, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(arr))
	for _, x := range arr {
		s, ok := x.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
