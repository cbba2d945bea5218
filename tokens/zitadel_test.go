package tokens

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// A real OpenID provider (zitadel/oidc pkg/op) issuing JWT access tokens by
// the client-credentials grant, with keys the test rotates.

type opKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *opKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *opKey) Algorithm() jose.SignatureAlgorithm          { return jose.RS256 }
func (k *opKey) Use() string                                 { return "sig" }
func (k *opKey) ID() string                                  { return k.id }

type opPublicKey struct{ *opKey }

func (k opPublicKey) Key() any { return &k.key.PublicKey }

type opSigningKey struct{ *opKey }

func (k opSigningKey) Key() any { return k.key }

// rotatingStorage is the example storage with rotatable signing keys and a
// client-credentials client that gets JWT access tokens for a resource.
type rotatingStorage struct {
	*storage.Storage
	audience string
	mu       sync.Mutex
	keys     []*opKey // published; the last one signs
}

func (s *rotatingStorage) SigningKey(context.Context) (op.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return opSigningKey{s.keys[len(s.keys)-1]}, nil
}

func (s *rotatingStorage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *rotatingStorage) KeySet(context.Context) ([]op.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]op.Key, 0, len(s.keys))
	for _, k := range s.keys {
		out = append(out, opPublicKey{k})
	}
	return out, nil
}

func (s *rotatingStorage) setKeys(keys ...*opKey) {
	s.mu.Lock()
	s.keys = keys
	s.mu.Unlock()
}

type ccClient struct{ *storage.Client }

func (ccClient) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeClientCredentials}
}
func (ccClient) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }
func (ccClient) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (ccClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

func (s *rotatingStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	if id == "cursor-acme" {
		return ccClient{storage.WebClient(id, "s3cret")}, nil
	}
	return s.Storage.GetClientByClientID(ctx, id)
}

func (s *rotatingStorage) ClientCredentials(ctx context.Context, id, secret string) (op.Client, error) {
	if id == "cursor-acme" && secret == "s3cret" {
		return ccClient{storage.WebClient(id, secret)}, nil
	}
	return s.Storage.ClientCredentials(ctx, id, secret)
}

func (s *rotatingStorage) ClientCredentialsTokenRequest(ctx context.Context, id string, scopes []string) (op.TokenRequest, error) {
	return &oidc.JWTTokenRequest{Subject: id, Audience: []string{s.audience}, Scopes: scopes}, nil
}

// GetPrivateClaimsFromScopes puts the granted scopes (pkg/op leaves them
// out of JWT access tokens), the tenant and groups into the token.
func (s *rotatingStorage) GetPrivateClaimsFromScopes(_ context.Context, _, clientID string, scopes []string) (map[string]any, error) {
	return map[string]any{"scope": strings.Join(scopes, " "), "tenant": "acme", "groups": []string{"internal-tools"}}, nil
}

func newOPKey(t *testing.T, id string) *opKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &opKey{id: id, key: k}
}

type zitadelOP struct {
	srv *httptest.Server
	st  *rotatingStorage
}

func newZitadelOP(t *testing.T, audience string, keys ...*opKey) *zitadelOP {
	var handler http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	st := &rotatingStorage{Storage: storage.NewStorage(storage.NewUserStore(srv.URL)), audience: audience, keys: keys}
	provider, err := op.NewOpenIDProvider(srv.URL, &op.Config{
		CryptoKey: sha256.Sum256([]byte("test")),
	}, st, op.WithAllowInsecure())
	if err != nil {
		t.Fatal(err)
	}
	handler = provider
	return &zitadelOP{srv: srv, st: st}
}

// token obtains an access token by the client-credentials grant.
func (z *zitadelOP) token(t *testing.T, scope string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
	req, _ := http.NewRequest(http.MethodPost, z.srv.URL+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("cursor-acme", "s3cret")
	resp, err := z.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Desc        string `json:"error_description"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 200 || out.AccessToken == "" {
		t.Fatalf("token endpoint: %d %s %s", resp.StatusCode, out.Error, out.Desc)
	}
	return out.AccessToken
}

func TestZitadelOPDiscoveryRotationAndOutage(t *testing.T) {
	k1 := newOPKey(t, "key-1")
	z := newZitadelOP(t, audA, k1)
	ks, err := NewKeySet(IssuerSpec{Issuer: z.srv.URL, TenantClaim: "tenant"}, z.srv.Client(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	if err := ks.Start(context.Background()); err != nil {
		t.Fatalf("discovery against the OP: %v", err)
	}
	ks.kidMissGap = 50 * time.Millisecond
	v := NewValidator(nil, nil) // no cache: every call verifies
	req := &Requirements{Issuers: []*KeySet{ks}, Audience: audA, Tenant: "acme"}
	ctx := context.Background()

	t1 := z.token(t, "mcp:read mcp:write")
	id, err := v.Validate(ctx, t1, req)
	if err != nil {
		t.Fatal(err)
	}
	if id.Agent != "cursor-acme" || id.Subject != "cursor-acme" || strings.Join(id.Scopes, " ") != "mcp:read mcp:write" ||
		id.Tenant != "acme" || len(id.Groups) != 1 {
		t.Fatalf("%+v", id)
	}
	// The same OP's token is refused by a server with another resource,
	// and by a server of another tenant.
	_, err = v.Validate(ctx, t1, &Requirements{Issuers: []*KeySet{ks}, Audience: audB})
	mustErr(t, err, 401, CodeInvalidToken)
	_, err = v.Validate(ctx, t1, &Requirements{Issuers: []*KeySet{ks}, Audience: audA, Tenant: "globex"})
	mustErr(t, err, 401, CodeInvalidToken)

	// Rotation: the OP publishes key-2 and signs with it.
	k2 := newOPKey(t, "key-2")
	z.st.setKeys(k1, k2)
	time.Sleep(60 * time.Millisecond)
	t2 := z.token(t, "mcp:read")
	if _, err := v.Validate(ctx, t2, req); err != nil {
		t.Fatalf("token of the rotated key: %v", err)
	}
	if _, err := v.Validate(ctx, t1, req); err != nil {
		t.Fatalf("still-valid token of the old key: %v", err)
	}
	if st := ks.Stats(); st.KidMissFetches != 1 || st.Keys != 2 {
		t.Fatalf("%+v", st)
	}

	// The OP goes away: the cached keys keep working.
	z.srv.Close()
	if err := ks.refresh(ctx, true); err == nil {
		t.Fatal("refresh succeeded against a stopped OP")
	}
	for _, tok := range []string{t1, t2} {
		if _, err := v.Validate(ctx, tok, req); err != nil {
			t.Fatalf("after outage: %v", err)
		}
	}
}
