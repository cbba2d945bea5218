package tokens

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// This file makes the gateway an issuer of resource tokens: short-lived
// JWTs for internal servers and APIs, signed with a key the gateway holds,
// published in a JWKS that keeps retired public keys while tokens they
// signed can still be alive.

// Defaults of MinterConfig.
const (
	DefaultResourceTokenTTL = 5 * time.Minute
	DefaultMintLeeway       = 30 * time.Second
	// ResourceTokenType is the JWS typ header of minted tokens (RFC 9068).
	ResourceTokenType = "at+jwt"
)

// ErrInvalidResourceToken is wrapped by every VerifyResourceToken failure.
var ErrInvalidResourceToken = errors.New("tokens: invalid resource token")

// SigningKey is a private key for resource tokens with its JWS algorithm and
// key ID (the RFC 7638 SHA-256 thumbprint, so the same key has the same kid
// on every instance). String never shows the private key.
type SigningKey struct {
	KeyID     string
	Algorithm string // ES256 (default), ES384, ES512, RS256, EdDSA
	Private   crypto.Signer
}

// String names the key without revealing it.
func (k *SigningKey) String() string {
	if k == nil {
		return "<nil>"
	}
	return "SigningKey{" + k.Algorithm + " kid=" + k.KeyID + "}"
}

// GoString is String.
func (k *SigningKey) GoString() string { return k.String() }

// Public is the public key.
func (k *SigningKey) Public() crypto.PublicKey { return k.Private.Public() }

// GenerateSigningKey makes a new key for alg: ES256 (default, ""), ES384,
// ES512, RS256 (3072-bit) or EdDSA (Ed25519).
func GenerateSigningKey(alg string) (*SigningKey, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case "", "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "RS256":
		priv, err = rsa.GenerateKey(rand.Reader, 3072)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("tokens: unsupported signing algorithm %q", alg)
	}
	if err != nil {
		return nil, err
	}
	return NewSigningKey(priv)
}

// NewSigningKey wraps a private key (*ecdsa.PrivateKey P-256/384/521,
// *rsa.PrivateKey of at least 2048 bits, ed25519.PrivateKey), inferring the
// algorithm and computing the kid.
func NewSigningKey(priv crypto.Signer) (*SigningKey, error) {
	var alg string
	switch k := priv.(type) {
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			alg = "ES256"
		case elliptic.P384():
			alg = "ES384"
		case elliptic.P521():
			alg = "ES512"
		default:
			return nil, errors.New("tokens: unsupported EC curve (P-256, P-384 or P-521)")
		}
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, errors.New("tokens: RSA signing key shorter than 2048 bits")
		}
		alg = "RS256"
	case ed25519.PrivateKey:
		alg = "EdDSA"
	case *ed25519.PrivateKey:
		priv = *k
		alg = "EdDSA"
	default:
		return nil, fmt.Errorf("tokens: unsupported signing key type %T", priv)
	}
	pub, err := jwk.FromRaw(priv.Public())
	if err != nil {
		return nil, fmt.Errorf("tokens: signing key: %w", err)
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("tokens: signing key thumbprint: %w", err)
	}
	return &SigningKey{KeyID: base64.RawURLEncoding.EncodeToString(tp), Algorithm: alg, Private: priv}, nil
}

// ParseSigningKeyPEM reads a PEM private key: PKCS#8 ("PRIVATE KEY"), SEC 1
// ("EC PRIVATE KEY", an "EC PARAMETERS" block before it is skipped) or
// PKCS#1 ("RSA PRIVATE KEY"); RSA, EC or Ed25519. Errors never quote the
// key material.
func ParseSigningKeyPEM(data []byte) (*SigningKey, error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("tokens: signing key: no PEM private key found")
		}
		var priv any
		var err error
		switch block.Type {
		case "EC PARAMETERS":
			continue
		case "PRIVATE KEY":
			priv, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			priv, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			priv, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("tokens: signing key: encrypted PEM keys are not supported")
		default:
			return nil, fmt.Errorf("tokens: signing key: PEM block %q is not a private key", block.Type)
		}
		if err != nil {
			return nil, errors.New("tokens: signing key: malformed " + block.Type)
		}
		s, ok := priv.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("tokens: signing key: unsupported key type %T", priv)
		}
		return NewSigningKey(s)
	}
}

// MarshalPEM encodes the private key as PKCS#8 PEM (for Caddy storage).
func (k *SigningKey) MarshalPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		return nil, fmt.Errorf("tokens: signing key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// RetiredKey is a former signing key whose public key stays in the JWKS
// (and verifies tokens) until Until.
type RetiredKey struct {
	KeyID     string
	Algorithm string
	Public    crypto.PublicKey
	Until     time.Time
}

// MinterConfig configures a Minter.
type MinterConfig struct {
	// Issuer is the iss of minted tokens (required).
	Issuer string
	// Key signs tokens (required; see GenerateSigningKey, ParseSigningKeyPEM).
	Key *SigningKey
	// TTL is the default lifetime (default 5m).
	TTL time.Duration
	// MaxTTL caps any requested lifetime and is how long a retired key stays
	// published after a rotation (default max(TTL, 1h)).
	MaxTTL time.Duration
	// Retired keys to keep publishing (e.g. restored from storage).
	Retired []RetiredKey
	// Leeway for exp and iat when verifying (default 30s).
	Leeway time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// MintRequest describes one resource token.
type MintRequest struct {
	// Audience: the resource(s) the token is for (required).
	Audience []string
	Subject  string // sub: the agent's subject
	ClientID string // client_id: the agent
	Tenant   string
	Scopes   []string // scope, space-delimited in the token
	// TTL: lifetime; 0 means the Minter's default; capped at MaxTTL.
	TTL time.Duration
	// Actor, when set, becomes act: {"sub": Actor} (RFC 8693 §4.1), e.g.
	// the internal server that exchanged a token.
	Actor string
	// Groups are the agent's groups (claim "groups"), so policies naming
	// groups can be evaluated again when the token is exchanged.
	Groups []string
	// Server is the gateway server the token was minted for (claim
	// "mcp_server").
	Server string
}

// ResourceClaims are the claims of a resource token.
type ResourceClaims struct {
	Issuer   string
	Subject  string
	Audience []string
	ClientID string
	Tenant   string
	Scopes   []string
	Actor    string
	Groups   []string
	Server   string
	IssuedAt time.Time
	Expiry   time.Time
	ID       string // jti
	KeyID    string // kid of the signing key
}

// mintWire is the JSON payload of a resource token.
type mintWire struct {
	Iss      string          `json:"iss"`
	Sub      string          `json:"sub,omitempty"`
	Aud      json.RawMessage `json:"aud"`
	ClientID string          `json:"client_id,omitempty"`
	Tenant   string          `json:"tenant,omitempty"`
	Scope    string          `json:"scope,omitempty"`
	Act      *mintActor      `json:"act,omitempty"`
	Groups   []string        `json:"groups,omitempty"`
	Server   string          `json:"mcp_server,omitempty"`
	Iat      int64           `json:"iat"`
	Nbf      int64           `json:"nbf"`
	Exp      int64           `json:"exp"`
	Jti      string          `json:"jti"`
}

type mintActor struct {
	Sub string `json:"sub"`
}

// Minter signs resource tokens and publishes its public keys. It is safe
// for concurrent use.
type Minter struct {
	issuer              string
	ttl, maxTTL, leeway time.Duration
	now                 func() time.Time

	mu sync.Mutex // serializes rotations and JWKS rebuilds
	st atomic.Pointer[mintState]
}

type mintState struct {
	current   *SigningKey
	signKey   jwk.Key // current private key as a JWK
	retired   []RetiredKey
	verify    map[string]mintVerifyKey
	jwks      []byte
	rebuildAt time.Time // earliest Until of a retired key (zero: none)
}

type mintVerifyKey struct {
	alg   jwa.SignatureAlgorithm
	pub   any
	until time.Time // zero for the current key
}

// NewMinter returns a Minter.
func NewMinter(cfg MinterConfig) (*Minter, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("tokens: minter needs an issuer")
	}
	if cfg.Key == nil || cfg.Key.Private == nil {
		return nil, errors.New("tokens: minter needs a signing key")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultResourceTokenTTL
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = max(cfg.TTL, time.Hour)
	}
	cfg.TTL = min(cfg.TTL, cfg.MaxTTL)
	if cfg.Leeway <= 0 {
		cfg.Leeway = DefaultMintLeeway
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Minter{issuer: cfg.Issuer, ttl: cfg.TTL, maxTTL: cfg.MaxTTL, leeway: cfg.Leeway, now: cfg.Now}
	st, err := m.build(cfg.Key, cfg.Retired, cfg.Now())
	if err != nil {
		return nil, err
	}
	m.st.Store(st)
	return m, nil
}

// Issuer is the iss of minted tokens.
func (m *Minter) Issuer() string { return m.issuer }

// TTL is the default lifetime; MaxTTL the cap.
func (m *Minter) TTL() time.Duration    { return m.ttl }
func (m *Minter) MaxTTL() time.Duration { return m.maxTTL }

// KeyID is the kid of the current signing key.
func (m *Minter) KeyID() string { return m.st.Load().current.KeyID }

// Key is the current signing key.
func (m *Minter) Key() *SigningKey { return m.st.Load().current }

// Retired lists the retired keys still published (for persistence).
func (m *Minter) Retired() []RetiredKey {
	st := m.state()
	return slices.Clone(st.retired)
}

// Rotate makes key (or, if nil, a new key of the current algorithm) the
// signing key. The previous key stays published and verifying until now +
// MaxTTL + leeway, when every token it signed has expired. It returns the new
// key (to persist).
func (m *Minter) Rotate(key *SigningKey) (*SigningKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.st.Load()
	if key == nil {
		var err error
		if key, err = GenerateSigningKey(old.current.Algorithm); err != nil {
			return nil, err
		}
	}
	now := m.now()
	retired := slices.Clone(old.retired)
	if key.KeyID != old.current.KeyID {
		retired = append(retired, RetiredKey{
			KeyID: old.current.KeyID, Algorithm: old.current.Algorithm,
			Public: old.current.Public(), Until: now.Add(m.maxTTL + m.leeway),
		})
	}
	st, err := m.build(key, retired, now)
	if err != nil {
		return nil, err
	}
	m.st.Store(st)
	return key, nil
}

// build makes the state: verification keys and the JWKS, dropping retired
// keys past their Until (and any retired key equal to the current one).
func (m *Minter) build(cur *SigningKey, retired []RetiredKey, now time.Time) (*mintState, error) {
	sk, err := jwk.FromRaw(cur.Private)
	if err != nil {
		return nil, fmt.Errorf("tokens: signing key: %w", err)
	}
	_ = sk.Set(jwk.KeyIDKey, cur.KeyID)
	st := &mintState{current: cur, signKey: sk, verify: map[string]mintVerifyKey{}}
	set := jwk.NewSet()
	add := func(kid, alg string, pub crypto.PublicKey, until time.Time) error {
		k, err := jwk.FromRaw(pub)
		if err != nil {
			return fmt.Errorf("tokens: public key %s: %w", kid, err)
		}
		if ok, _ := jwk.IsPrivateKey(k); ok {
			return fmt.Errorf("tokens: key %s: a private key where a public key belongs", kid)
		}
		_ = k.Set(jwk.KeyIDKey, kid)
		_ = k.Set(jwk.AlgorithmKey, jwa.SignatureAlgorithm(alg))
		_ = k.Set(jwk.KeyUsageKey, "sig")
		if err := set.AddKey(k); err != nil {
			return err
		}
		st.verify[kid] = mintVerifyKey{alg: jwa.SignatureAlgorithm(alg), pub: pub, until: until}
		return nil
	}
	if err := add(cur.KeyID, cur.Algorithm, cur.Public(), time.Time{}); err != nil {
		return nil, err
	}
	for _, r := range retired {
		if !now.Before(r.Until) || r.KeyID == cur.KeyID {
			continue
		}
		if _, dup := st.verify[r.KeyID]; dup {
			continue
		}
		if err := add(r.KeyID, r.Algorithm, r.Public, r.Until); err != nil {
			return nil, err
		}
		st.retired = append(st.retired, r)
		if st.rebuildAt.IsZero() || r.Until.Before(st.rebuildAt) {
			st.rebuildAt = r.Until
		}
	}
	st.jwks, err = json.Marshal(set)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// state returns the current state, dropping expired retired keys first.
func (m *Minter) state() *mintState {
	st := m.st.Load()
	if st.rebuildAt.IsZero() {
		return st
	}
	now := m.now()
	if now.Before(st.rebuildAt) {
		return st
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st = m.st.Load()
	if st.rebuildAt.IsZero() || now.Before(st.rebuildAt) {
		return st
	}
	if nst, err := m.build(st.current, st.retired, now); err == nil {
		m.st.Store(nst)
		st = nst
	}
	return st
}

// JWKS is the JSON Web Key Set of the public keys: the current one and the
// retired ones whose tokens may still be alive. It never holds private
// parts. The slice is the caller's.
func (m *Minter) JWKS() []byte { return slices.Clone(m.state().jwks) }

// Mint signs a resource token.
func (m *Minter) Mint(req MintRequest) (string, *ResourceClaims, error) {
	if len(req.Audience) == 0 || slices.Contains(req.Audience, "") {
		return "", nil, errors.New("tokens: resource token needs an audience")
	}
	ttl := req.TTL
	if ttl <= 0 {
		ttl = m.ttl
	}
	ttl = min(ttl, m.maxTTL)
	st := m.st.Load()
	now := m.now().Truncate(time.Second)
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", nil, err
	}
	c := &ResourceClaims{
		Issuer: m.issuer, Subject: req.Subject, Audience: slices.Clone(req.Audience),
		ClientID: req.ClientID, Tenant: req.Tenant, Scopes: slices.Clone(req.Scopes), Actor: req.Actor,
		Groups: slices.Clone(req.Groups), Server: req.Server,
		IssuedAt: now, Expiry: now.Add(ttl), ID: base64.RawURLEncoding.EncodeToString(jti[:]),
		KeyID: st.current.KeyID,
	}
	w := mintWire{
		Iss: c.Issuer, Sub: c.Subject, ClientID: c.ClientID, Tenant: c.Tenant,
		Scope: strings.Join(c.Scopes, " "), Iat: now.Unix(), Nbf: now.Unix(), Exp: c.Expiry.Unix(), Jti: c.ID,
		Groups: c.Groups, Server: c.Server,
	}
	var err error
	if len(c.Audience) == 1 {
		w.Aud, err = json.Marshal(c.Audience[0])
	} else {
		w.Aud, err = json.Marshal(c.Audience)
	}
	if err != nil {
		return "", nil, err
	}
	if req.Actor != "" {
		w.Act = &mintActor{Sub: req.Actor}
	}
	payload, err := json.Marshal(&w)
	if err != nil {
		return "", nil, err
	}
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, st.current.KeyID)
	_ = hdr.Set(jws.TypeKey, ResourceTokenType)
	raw, err := jws.Sign(payload, jws.WithKey(jwa.SignatureAlgorithm(st.current.Algorithm), st.signKey, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", nil, fmt.Errorf("tokens: signing a resource token: %w", err)
	}
	return string(raw), c, nil
}

// VerifyResourceToken checks that raw is a resource token this Minter
// signed (with its current key or a retired key still published), issued by
// its issuer, and not expired. Audience is the caller's to check. Errors
// wrap ErrInvalidResourceToken and never quote the token.
func (m *Minter) VerifyResourceToken(raw string) (*ResourceClaims, error) {
	bad := func(why string) error { return fmt.Errorf("%w: %s", ErrInvalidResourceToken, why) }
	if len(raw) > MaxTokenSize || strings.Count(raw, ".") != 2 {
		return nil, bad("malformed")
	}
	msg, err := jws.Parse([]byte(raw))
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, bad("malformed")
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	if h.Type() != ResourceTokenType {
		return nil, bad("not a resource token")
	}
	st := m.state()
	now := m.now()
	vk, ok := st.verify[h.KeyID()]
	if !ok || (!vk.until.IsZero() && !now.Before(vk.until)) {
		return nil, bad("unknown signing key")
	}
	if h.Algorithm() != vk.alg {
		return nil, bad("algorithm does not match the key")
	}
	payload, err := jws.Verify([]byte(raw), jws.WithKey(vk.alg, vk.pub))
	if err != nil {
		return nil, bad("signature verification failed")
	}
	var w mintWire
	if err := json.Unmarshal(payload, &w); err != nil {
		return nil, bad("malformed claims")
	}
	if w.Iss != m.issuer {
		return nil, bad("issuer mismatch")
	}
	exp, iat := time.Unix(w.Exp, 0), time.Unix(w.Iat, 0)
	if w.Exp == 0 || !now.Before(exp.Add(m.leeway)) {
		return nil, bad("expired")
	}
	if iat.After(now.Add(m.leeway)) {
		return nil, bad("issued in the future")
	}
	c := &ResourceClaims{
		Issuer: w.Iss, Subject: w.Sub, ClientID: w.ClientID, Tenant: w.Tenant,
		Scopes: strings.Fields(w.Scope), IssuedAt: iat, Expiry: exp, ID: w.Jti, KeyID: h.KeyID(),
		Groups: w.Groups, Server: w.Server,
	}
	if w.Act != nil {
		c.Actor = w.Act.Sub
	}
	if len(w.Aud) > 0 && w.Aud[0] == '"' {
		var a string
		if json.Unmarshal(w.Aud, &a) == nil {
			c.Audience = []string{a}
		}
	} else if json.Unmarshal(w.Aud, &c.Audience) != nil {
		return nil, bad("malformed audience")
	}
	if len(c.Audience) == 0 {
		return nil, bad("no audience")
	}
	return c, nil
}
