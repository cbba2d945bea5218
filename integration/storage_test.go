package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddymcp/gateway/internal/oidctest"
)

// restartOn runs the binary again on caddyfile text in the directory (and
// so the storage) of a stopped gateway, and waits for port.
func restartOn(t *testing.T, prev *caddyProc, caddyfile string, port int) *caddyProc {
	t.Helper()
	path := filepath.Join(prev.Dir, "Caddyfile.restart")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &caddyProc{t: t, Dir: prev.Dir, Caddyfile: path, AdminAddr: prev.AdminAddr, Output: new(syncBuffer), exited: make(chan struct{})}
	c.cmd = exec.Command(needCaddy(t), "run", "--config", path, "--adapter", "caddyfile")
	c.cmd.Dir = prev.Dir
	c.cmd.Stdout, c.cmd.Stderr = c.Output, c.Output
	c.cmd.Env = prev.cmd.Env
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.exitErr = c.cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			t.Logf("restarted caddy output:\n%s", c.Output.String())
		}
	})
	if err := c.waitReady([]int{port}, 30*time.Second); err != nil {
		t.Fatalf("restarted caddy not ready: %v", err)
	}
	return c
}

func jwksKids(t *testing.T, url string) []string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
			D   string `json:"d"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		if k.D != "" {
			t.Fatal("the JWKS publishes a private key")
		}
		kids = append(kids, k.Kid)
	}
	return kids
}

// TestStateInCaddyStorage: what the gateway keeps in Caddy's storage
// survives a restart. The generated resource-token signing key is reused; a
// newly configured signing_key takes over while the old public key stays in
// the JWKS (its tokens may still live); and a refresh token the tenant's
// authorization server rotated is persisted, so the restarted gateway (or
// another instance on the same storage) keeps working although the token in
// the config has been used up.
func TestStateInCaddyStorage(t *testing.T) {
	op := startProvider(t, oidctest.WithClients(
		oidctest.Client{ID: "agent", Secret: agentSecret, GrantTypes: []string{oidctest.GrantClientCredentials},
			Scopes: []string{"mcp:read"}, Groups: []string{"staff"}},
		oidctest.Client{ID: "notion-app", Secret: "notion-app-secret", GrantTypes: []string{oidctest.GrantRefreshToken},
			Scopes: []string{"read_content"}},
	))
	refresh0, err := op.IssueRefreshToken("notion-app", "acme-workspace", []string{"https://api.notion.example"}, "read_content")
	if err != nil {
		t.Fatal(err)
	}
	notion := newUpstream(t, "notion")
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	global := func(signingKey string) string {
		return fmt.Sprintf(`mcp {
	issuer %s
	resource_tokens {
		issuer https://mcp.example.com
		%s
	}
	tenant acme {
		connection notion {
			oauth2 {
				token_url %s
				client_id notion-app
				client_secret notion-app-secret
				refresh_token %s
				scopes read_content
			}
		}
	}
	policy staff {
		allow
		agents group:staff
		scopes mcp:read
	}
}`, op.Issuer(), signingKey, op.TokenURL(), refresh0)
	}
	sites := fmt.Sprintf(`%s {
	mcp_gateway {
		server notion {
			tenant acme
			path /notion/mcp
			upstream %s
			connection notion
			require mcp:read
		}
	}
}`, base, notion.URL)
	a := startCaddy(t, caddyConfig{Global: global(""), Sites: sites, WaitPorts: []int{port}})
	ctx, cancel := testContext(t, 90)
	defer cancel()
	tok, err := op.AgentToken(ctx, "agent", base+"/notion/mcp", "mcp:read")
	if err != nil {
		t.Fatal(err)
	}
	call := func(what string) {
		t.Helper()
		st, body, err := statelessCall(ctx, http.DefaultClient, base+"/notion/mcp", tok, "whoami", nil)
		if err != nil || st != 200 || !strings.Contains(body, "upstream=notion") {
			t.Fatalf("%s: %d %v %.300s", what, st, err, body)
		}
	}
	call("first call (refresh grant with the configured token)")
	if op.RefreshTokenValid(refresh0) {
		t.Fatal("the provider did not rotate the refresh token")
	}
	kids1 := jwksKids(t, base+"/.well-known/jwks.json")
	if len(kids1) != 1 {
		t.Fatalf("generated key: JWKS kids %v", kids1)
	}
	stored, err := os.ReadFile(filepath.Join(a.Dir, "storage", "mcp", "refresh_tokens", "acme", "notion"))
	if err != nil || len(stored) == 0 || string(stored) == refresh0 {
		t.Fatalf("rotated refresh token not in storage: %v", err)
	}
	a.stop()

	// Restart on the same storage with an operator-supplied signing key.
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	keyFile := filepath.Join(a.Dir, "signing.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cf, err := os.ReadFile(a.Caddyfile)
	if err != nil {
		t.Fatal(err)
	}
	withKey := strings.Replace(string(cf), "issuer https://mcp.example.com", "issuer https://mcp.example.com\n\t\tsigning_key {file."+keyFile+"}", 1)
	if withKey == string(cf) {
		t.Fatal("could not add signing_key to the Caddyfile")
	}
	b := restartOn(t, a, withKey, port)
	// The first call after the restart needs a new downstream token: it
	// can only come from the rotated refresh token kept in storage.
	call("after restart (stored refresh token)")
	kids2 := jwksKids(t, base+"/.well-known/jwks.json")
	if len(kids2) != 2 || !slices.Contains(kids2, kids1[0]) {
		t.Fatalf("after configuring a new key, JWKS kids %v (want the new one and the retired %s)", kids2, kids1[0])
	}
	assertNoSecretsLogged(t, b, tok, refresh0, string(stored), "notion-app-secret")
	assertNoSecretsLogged(t, a, tok, refresh0, string(stored), "notion-app-secret")
}
