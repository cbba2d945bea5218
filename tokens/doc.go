// Package tokens handles the gateway's tokens: inbound validation (this
// overview), connection token acquisition and caching (Acquirer, ConnCache)
// and gateway-minted resource tokens (Minter), documented with their types.
//
// Inbound validation checks the OAuth 2.1 access tokens that agents present
// to the MCP gateway, as a resource server per the MCP authorization
// specification (2025-06-18, 2025-11-25), RFC 6750 (bearer usage), RFC 8707
// (audience = the server's resource), RFC 9728 and RFC 8414 / OpenID
// Connect Discovery (finding an issuer's keys). It is pure Go (no Caddy
// imports); signatures are verified with lestrrat-go/jwx/v2, verified tokens
// are cached in ristretto.
//
// # API (inbound validation)
//
//	func BearerToken(r *http.Request) (string, error)
//	func NewKeySet(spec IssuerSpec, client *http.Client, logger *zap.Logger) (*KeySet, error)
//	func (*KeySet) Start(ctx context.Context) error   // first fetch (error informational), then background refresh
//	func (*KeySet) Close()
//	func (*KeySet) Issuer() string
//	func (*KeySet) Spec() IssuerSpec
//	func (*KeySet) Stats() KeySetStats
//	func NewCache(maxCost int64) (*Cache, error)
//	func (*Cache) Close()
//	func (*Cache) Clear()
//	func (*Cache) Stats() CacheStats
//	func NewValidator(cache *Cache, logger *zap.Logger) *Validator
//	func (*Validator) Validate(ctx context.Context, raw string, req *Requirements) (*Identity, error)
//	func (*Validator) Stats() ValidatorStats
//
// Typical use in an HTTP handler:
//
//	raw, err := tokens.BearerToken(r)       // ErrNoToken -> 401 challenge without error code
//	if err == nil {
//		id, err = validator.Validate(r.Context(), raw, server.requirements)
//	}
//	var te *tokens.Error                    // errors.As: te.Status (401/400), te.Code, te.Description
//
// # Errors
//
// Every failure is ErrNoToken (no bearer token: 401 with a bare challenge) or
// an *Error whose Status/Code/Description map onto the WWW-Authenticate
// header: 401 invalid_token for anything wrong with the token, 400
// invalid_request for a malformed request (token in the query string or a
// form body, several Authorization headers, a malformed header).
// Descriptions are fixed texts that never contain the token or claim values;
// Unwrap gives an internal cause (for example a JWKS fetch error) for logs.
//
// # Validation
//
// A token is a JWS in compact serialization of at most MaxTokenSize bytes.
// The JOSE header must name an algorithm in the issuer's allow-list ("none"
// and HS* can never be configured) and may not carry "crit" or "b64". The
// payload is decoded once (unverified) to read "iss"; only a KeySet of
// Requirements.Issuers with exactly that issuer may verify it, and only with
// a key whose kid matches and whose type and curve are the ones the
// algorithm is defined for (and whose JWK "alg", if any, is that
// algorithm): an RSA key can never serve as an HMAC secret, a P-384 key
// never verifies "ES256". exp is required; exp, nbf and iat (not in the
// future) are checked with the issuer's leeway; aud must contain
// Requirements.Audience exactly; when the issuer has a TenantClaim and the
// token carries it, it must equal Requirements.Tenant. Claims are checked
// before the (expensive) signature, so tokens meant for another server are
// refused without a verification.
//
// Identity: Subject from sub; Agent from the issuer's AgentClaim (default
// client_id, then azp); Groups from GroupsClaim (array or string); Scopes
// from scope (space-delimited string, or array) or else scp (array or
// string); every claim in Claims.
//
// # Keys
//
// A KeySet holds one issuer's keys in an atomically swapped table (lock-free
// lookups). The JWKS URL is configured or discovered: RFC 8414
// (/.well-known/oauth-authorization-server with the issuer's path inserted),
// then OpenID Connect discovery in the insertion and the appending form; the
// metadata's issuer must equal the configured one. Keys are refreshed in the
// background every Cache-Control max-age, bounded to [1m, 1h] (15m without
// one), sooner with backoff after a failure. A failed fetch keeps the last
// good keys. A kid that is not in the table triggers one refresh: concurrent
// misses share one fetch (singleflight), and at most one such fetch happens
// per KidMissInterval (10s) per issuer; a request stops waiting when its
// context ends, the fetch goes on. Only public signature keys are used
// (use=sig or absent, RSA >= 2048 bits, P-256/384/521, Ed25519). Issuer and
// JWKS URLs must be https, or http on a loopback address.
//
// KeySets carry no per-server state: share one per issuer across servers and
// across config reloads (for example with a caddy.UsagePool keyed by the
// issuer spec). Two KeySets built from equal specs are interchangeable for
// cached results.
//
// # Cache
//
// The Cache maps SHA-256(token) to the verified claims (the token is never
// stored; the ristretto key is the first 8 bytes of the hash and the full
// hash is compared on a hit). Entries live until the token's exp plus leeway,
// at most DefaultCacheMaxTTL (5m), cost the payload size plus a fixed
// overhead, and are evicted by ristretto's TinyLFU within MaxCost. A hit
// re-checks against the current request: that the verifying issuer is
// trusted by this server, exp, aud and the tenant claim — so a token cached
// at server B is still refused at server A. The hit path allocates nothing
// and takes no shared lock. Identities served from the cache are shared:
// treat them as read-only.
package tokens
