package caddymcp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddymcp/gateway/tokens"
)

// Shared state that outlives a config reload: the new config provisions
// before the old one is cleaned up, so keys and verified tokens carry over
// (reference counted; freed when no config uses them any more).
var (
	keySetPool     = caddy.NewUsagePool()
	tokenCachePool = caddy.NewUsagePool()
)

const defaultCacheMaxCost = 64 << 20

type keySetHandle struct{ ks *tokens.KeySet }

func (k keySetHandle) Destruct() error { k.ks.Close(); return nil }

type tokenCacheHandle struct{ c *tokens.Cache }

func (c tokenCacheHandle) Destruct() error { c.c.Close(); return nil }

// authState is the app's inbound-token machinery.
type authState struct {
	validator *tokens.Validator
	cache     *tokens.Cache
	global    []*tokens.KeySet
	byTenant  map[string][]*tokens.KeySet
	poolKeys  []string // keys held in keySetPool
	cacheKey  string   // key held in tokenCachePool
}

func issuerSpec(c *IssuerConfig) tokens.IssuerSpec {
	return tokens.IssuerSpec{
		Issuer:      c.Issuer,
		JWKSURI:     c.JWKSURI,
		Algorithms:  c.Algorithms,
		AgentClaim:  c.AgentClaim,
		GroupsClaim: c.GroupsClaim,
		TenantClaim: c.TenantClaim,
		Leeway:      time.Duration(c.Leeway),
	}
}

// provisionAuth loads (or reuses across reloads) the key sets of every
// configured issuer and the verified-token cache.
func (a *App) provisionAuth() error {
	st := &authState{byTenant: make(map[string][]*tokens.KeySet)}
	a.auth = st
	client := &http.Client{Timeout: 10 * time.Second}
	logger := a.logger.Named("jwks")

	load := func(c *IssuerConfig) (*tokens.KeySet, error) {
		spec := issuerSpec(c)
		keyJSON, _ := json.Marshal(c)
		key := string(keyJSON)
		v, _, err := keySetPool.LoadOrNew(key, func() (caddy.Destructor, error) {
			ks, err := tokens.NewKeySet(spec, client, logger)
			if err != nil {
				return nil, err
			}
			// Fetch in the background: a slow or down JWKS endpoint must
			// not hold up loading the config; an unknown kid triggers a
			// fetch anyway.
			go func() { _ = ks.Start(context.Background()) }()
			return keySetHandle{ks}, nil
		})
		if err != nil {
			return nil, fmt.Errorf("issuer %s: %v", c.Issuer, err)
		}
		st.poolKeys = append(st.poolKeys, key)
		return v.(keySetHandle).ks, nil
	}
	for _, c := range a.Issuers {
		ks, err := load(c)
		if err != nil {
			return err
		}
		st.global = append(st.global, ks)
	}
	for _, t := range a.Tenants {
		for _, c := range t.Issuers {
			ks, err := load(c)
			if err != nil {
				return fmt.Errorf("tenant %s: %v", t.Name, err)
			}
			st.byTenant[t.Name] = append(st.byTenant[t.Name], ks)
		}
	}

	maxCost := int64(defaultCacheMaxCost)
	if a.Cache != nil && a.Cache.MaxCost > 0 {
		maxCost = a.Cache.MaxCost
	}
	st.cacheKey = fmt.Sprintf("tokens:%d", maxCost)
	v, _, err := tokenCachePool.LoadOrNew(st.cacheKey, func() (caddy.Destructor, error) {
		c, err := tokens.NewCache(maxCost)
		if err != nil {
			return nil, err
		}
		return tokenCacheHandle{c}, nil
	})
	if err != nil {
		return fmt.Errorf("token cache: %v", err)
	}
	st.cache = v.(tokenCacheHandle).c
	st.validator = tokens.NewValidator(st.cache, a.logger.Named("tokens"))
	return nil
}

// cleanupAuth releases this config's references to shared state.
func (a *App) cleanupAuth() {
	if a.auth == nil {
		return
	}
	for _, k := range a.auth.poolKeys {
		_, _ = keySetPool.Delete(k)
	}
	if a.auth.cacheKey != "" {
		_, _ = tokenCachePool.Delete(a.auth.cacheKey)
	}
	// a.auth stays: after a reload, requests still running in this
	// config's handlers keep using it (Caddy cleans up the old config
	// while its requests drain). The pools only drop their references.
	a.auth.poolKeys, a.auth.cacheKey = nil, ""
}

// issuersFor returns the key sets a server of tenant trusts: the tenant's
// own issuers when it has any, else the global ones.
func (a *App) issuersFor(tenant string) []*tokens.KeySet {
	if ks := a.auth.byTenant[tenant]; len(ks) > 0 {
		return ks
	}
	return a.auth.global
}

// authenticate is step 3 of the pipeline. It returns the agent's identity,
// or writes the RFC 6750 challenge and returns nil.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request, srv *server, x *exchange) (*tokens.Identity, error) {
	raw, err := tokens.BearerToken(r)
	if err != nil {
		observeTokenValidation(err)
		var te *tokens.Error
		if errors.As(err, &te) {
			h.logAuthFailure(srv, "", te)
			return nil, srv.challenge(w, r, te.Status, te.Code, te.Description)
		}
		return nil, srv.challenge(w, r, http.StatusUnauthorized, "", "")
	}
	req := srv.requirements
	if srv.resource == "" {
		req = &tokens.Requirements{Issuers: srv.requirements.Issuers, Tenant: srv.cfg.Tenant, Audience: srv.resourceFor(r)}
	}
	id, err := h.app.auth.validator.Validate(r.Context(), raw, req)
	observeTokenValidation(err)
	if err != nil {
		te := &tokens.Error{Status: http.StatusUnauthorized, Code: tokens.CodeInvalidToken, Description: "invalid token"}
		errors.As(err, &te)
		h.logAuthFailure(srv, raw, te)
		return nil, srv.challenge(w, r, te.Status, te.Code, te.Description)
	}
	x.rawToken = raw
	return id, nil
}

func (h *Handler) logAuthFailure(srv *server, raw string, te *tokens.Error) {
	if ce := h.logger.Check(zap.InfoLevel, "token refused"); ce != nil {
		fields := []zap.Field{zap.String("server", srv.cfg.Name), zap.String("tenant", srv.cfg.Tenant),
			zap.String("error", te.Code), zap.String("description", te.Description)}
		if raw != "" {
			fields = append(fields, zap.String("token_hash", tokenHash(raw)))
		}
		ce.Write(fields...)
	}
}

// tokenHash is a short, non-reversible label of a token for logs.
func tokenHash(raw string) string {
	h := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(h[:6])
}
