// Command benchissuer runs the benchmark's authorization servers and mints the agent tokens.
//
// It starts two real OAuth/OIDC providers (internal/oidctest, built on zitadel/oidc pkg/op) on
// loopback — one signing RS256, one ES256 — registers an agent client at each, obtains one
// access token from each through the real client-credentials grant (RFC 8707 resource = the
// gateway server's audience, scope mcp:read, 24h lifetime), writes them to -out, and serves the
// providers (discovery, /keys JWKS) until it is killed.
//
// Files written to -out: rs256.jwt, es256.jwt (one token each, no newline), ready (empty,
// written last).
//
// Usage: benchissuer -rs 127.0.0.1:9511 -es 127.0.0.1:9512 -aud http://127.0.0.1:9530/bench/mcp -out DIR
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/caddymcp/gateway/internal/oidctest"
)

func main() {
	rsAddr := flag.String("rs", "127.0.0.1:9511", "listen address of the RS256 issuer")
	esAddr := flag.String("es", "127.0.0.1:9512", "listen address of the ES256 issuer")
	aud := flag.String("aud", "", "audiences of the tokens (the gateway servers' resources), comma-separated")
	out := flag.String("out", ".", "directory for the token files")
	flag.Parse()
	if *aud == "" {
		log.Fatal("benchissuer: -aud is required")
	}
	agent := oidctest.Client{
		ID:       "bench-agent",
		Secret:   "bench-secret",
		Groups:   []string{"bench"},
		Tenant:   "bench",
		TokenTTL: 24 * time.Hour,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	auds := strings.Split(*aud, ",")
	var providers []*oidctest.Provider
	for _, p := range []struct{ addr, alg, file string }{
		{*rsAddr, "RS256", "rs256.jwt"},
		{*esAddr, "ES256", "es256.jwt"},
	} {
		prov, err := oidctest.Start(p.addr, oidctest.WithAlgorithm(p.alg), oidctest.WithTokenTTL(24*time.Hour),
			oidctest.WithClients(agent))
		if err != nil {
			log.Fatalf("benchissuer: %s issuer: %v", p.alg, err)
		}
		providers = append(providers, prov)
		// One token per audience; the first audience's token goes to FILE, the others to
		// FILE with the audience index (rs256.1.jwt ...).
		for i, a := range auds {
			tok, err := prov.AgentToken(ctx, agent.ID, a, "mcp:read")
			if err != nil {
				log.Fatalf("benchissuer: %s token for %s: %v", p.alg, a, err)
			}
			name := p.file
			if i > 0 {
				name = strings.TrimSuffix(p.file, ".jwt") + "." + string(rune('0'+i)) + ".jwt"
			}
			if err := os.WriteFile(filepath.Join(*out, name), []byte(tok), 0o600); err != nil {
				log.Fatal(err)
			}
		}
		log.Printf("benchissuer: %s issuer %s (jwks %s)", p.alg, prov.Issuer(), prov.JWKSURL())
	}
	if err := os.WriteFile(filepath.Join(*out, "ready"), nil, 0o600); err != nil {
		log.Fatal(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	for _, p := range providers {
		p.Close()
	}
}
