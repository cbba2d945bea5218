package caddymcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddymcp/gateway/connections"
	"github.com/caddymcp/gateway/tokens"
)

// Credentials (SPEC step 7): the app builds every tenant connection once
// per config, with its secrets resolved from {env.*} / {file.*} at
// provision, sharing one connection-token cache across reloads; the
// resource-token minter signs with a key from config or from Caddy
// storage (generated once, so a fleet sharing the storage shares it).

const (
	storageSigningKey = "mcp/resource_tokens/current.pem"
	storageRetired    = "mcp/resource_tokens/retired.json"
	defaultRTIssuer   = "caddy-mcp-gateway"
	defaultRTTTL      = 5 * time.Minute
)

var connCachePool = caddy.NewUsagePool()

type connCacheHandle struct{ c *tokens.ConnCache }

func (h connCacheHandle) Destruct() error { h.c.Close(); return nil }

// resolveSecret replaces {env.*} / {file.*} placeholders once, refusing
// unknown or empty ones (a typo must not silently become an empty secret).
func resolveSecret(what, v string) (string, error) {
	if !strings.Contains(v, "{") {
		return v, nil
	}
	out, err := caddy.NewReplacer().ReplaceOrErr(v, true, true)
	if err != nil {
		return "", fmt.Errorf("%s: %v", what, err)
	}
	return strings.TrimRight(out, "\r\n"), nil
}

// retiredKey is a retired signing key as kept in storage.
type retiredKey struct {
	PEM   string    `json:"pem"`
	Until time.Time `json:"until"`
}

// provisionMinter loads the resource-token signing key and builds the
// minter. A configured key that differs from the one last used retires the
// old one, whose public key stays in the JWKS while its tokens can live.
func (a *App) provisionMinter(ctx caddy.Context) error {
	rt := a.ResourceTokens
	if rt == nil {
		rt = new(ResourceTokensConfig)
	}
	ttl := time.Duration(rt.TTL)
	if ttl <= 0 {
		ttl = defaultRTTTL
	}
	issuer := rt.Issuer
	if issuer == "" {
		issuer = defaultRTIssuer
	}
	maxTTL := time.Hour
	if ttl > maxTTL {
		maxTTL = ttl
	}
	for _, t := range a.Tenants {
		for _, c := range t.Connections {
			if c.ResourceToken != nil && time.Duration(c.ResourceToken.TTL) > maxTTL {
				maxTTL = time.Duration(c.ResourceToken.TTL)
			}
		}
	}

	var configured *tokens.SigningKey
	if rt.SigningKey != "" {
		pemText, err := resolveSecret("resource_tokens signing_key", rt.SigningKey)
		if err != nil {
			return err
		}
		if configured, err = tokens.ParseSigningKeyPEM([]byte(pemText)); err != nil {
			return fmt.Errorf("resource_tokens signing_key: %v", err)
		}
	}

	st := ctx.Storage()
	var key *tokens.SigningKey
	var retired []tokens.RetiredKey
	if st == nil {
		key = configured
	} else {
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := st.Lock(c, storageSigningKey); err != nil {
			return fmt.Errorf("locking %s: %v", storageSigningKey, err)
		}
		defer func() { _ = st.Unlock(context.WithoutCancel(c), storageSigningKey) }()

		var stored *tokens.SigningKey
		if b, err := st.Load(c, storageSigningKey); err == nil {
			if stored, err = tokens.ParseSigningKeyPEM(b); err != nil {
				return fmt.Errorf("storage %s: %v", storageSigningKey, err)
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("loading %s: %v", storageSigningKey, err)
		}
		var kept []retiredKey
		if b, err := st.Load(c, storageRetired); err == nil {
			if err := json.Unmarshal(b, &kept); err != nil {
				return fmt.Errorf("storage %s: %v", storageRetired, err)
			}
		}
		key = configured
		if key == nil {
			key = stored
		}
		changed := false
		if key == nil {
			var err error
			if key, err = tokens.GenerateSigningKey("ES256"); err != nil {
				return err
			}
		}
		if stored == nil || stored.KeyID != key.KeyID {
			changed = true
			if stored != nil {
				p, err := stored.MarshalPEM()
				if err != nil {
					return err
				}
				kept = append(kept, retiredKey{PEM: string(p), Until: time.Now().Add(maxTTL + time.Minute)})
				a.logger.Info("resource token signing key rotated", zap.String("old_kid", stored.KeyID), zap.String("new_kid", key.KeyID))
			}
		}
		now := time.Now()
		live := kept[:0]
		for _, k := range kept {
			if k.Until.After(now) {
				live = append(live, k)
			}
		}
		if len(live) != len(kept) {
			changed = true
		}
		for _, k := range live {
			sk, err := tokens.ParseSigningKeyPEM([]byte(k.PEM))
			if err != nil {
				return fmt.Errorf("storage %s: %v", storageRetired, err)
			}
			if sk.KeyID == key.KeyID {
				continue
			}
			retired = append(retired, tokens.RetiredKey{KeyID: sk.KeyID, Algorithm: sk.Algorithm, Public: sk.Private.Public(), Until: k.Until})
		}
		if changed {
			p, err := key.MarshalPEM()
			if err != nil {
				return err
			}
			if err := st.Store(c, storageSigningKey, p); err != nil {
				return fmt.Errorf("storing %s: %v", storageSigningKey, err)
			}
			b, _ := json.Marshal(live)
			if err := st.Store(c, storageRetired, b); err != nil {
				return fmt.Errorf("storing %s: %v", storageRetired, err)
			}
		}
	}
	if key == nil {
		var err error
		if key, err = tokens.GenerateSigningKey("ES256"); err != nil {
			return err
		}
	}
	m, err := tokens.NewMinter(tokens.MinterConfig{Issuer: issuer, Key: key, TTL: ttl, MaxTTL: maxTTL, Retired: retired})
	if err != nil {
		return fmt.Errorf("resource tokens: %v", err)
	}
	a.minter = m
	return nil
}

// provisionConnections builds every tenant's connections.
func (a *App) provisionConnections(ctx caddy.Context) error {
	maxCost := int64(defaultCacheMaxCost)
	if a.Cache != nil && a.Cache.MaxCost > 0 {
		maxCost = a.Cache.MaxCost
	}
	a.connCacheKey = fmt.Sprintf("conns:%d", maxCost)
	v, _, err := connCachePool.LoadOrNew(a.connCacheKey, func() (caddy.Destructor, error) {
		c, err := tokens.NewConnCache(tokens.ConnCacheConfig{MaxCost: maxCost})
		if err != nil {
			return nil, err
		}
		return connCacheHandle{c}, nil
	})
	if err != nil {
		return fmt.Errorf("connection token cache: %v", err)
	}
	a.connCache = v.(connCacheHandle).c

	a.conns = make(map[string]map[string]*connections.Connection, len(a.Tenants))
	for _, t := range a.Tenants {
		m := make(map[string]*connections.Connection, len(t.Connections))
		for _, cc := range t.Connections {
			conn, err := a.buildConnection(ctx, t.Name, cc)
			if err != nil {
				return fmt.Errorf("tenant %s connection %s: %v", t.Name, cc.Name, err)
			}
			m[cc.Name] = conn
		}
		a.conns[t.Name] = m
	}
	return nil
}

func (a *App) connOptions() connections.Options {
	return connections.Options{Cache: a.connCache, Minter: a.minter}
}

func (a *App) buildConnection(ctx caddy.Context, tenant string, cc *ConnectionConfig) (*connections.Connection, error) {
	spec := connections.Spec{Name: cc.Name, Tenant: tenant}
	var err error
	sec := func(what, v string) string {
		if err != nil {
			return ""
		}
		var out string
		out, err = resolveSecret(what, v)
		return out
	}
	if k := cc.APIKey; k != nil {
		spec.APIKey = &connections.APIKey{Header: k.Header, Value: sec("api_key", k.Value)}
	}
	if cc.Bearer != "" {
		spec.Bearer = sec("bearer", cc.Bearer)
	}
	if o := cc.OAuth2; o != nil {
		spec.OAuth2 = &connections.OAuth2{TokenURL: o.TokenURL, ClientID: sec("client_id", o.ClientID),
			ClientSecret: sec("client_secret", o.ClientSecret), AuthMethod: o.AuthMethod,
			RefreshToken: sec("refresh_token", o.RefreshToken), Scopes: o.Scopes, Audience: o.Audience, Resource: o.Resource}
	}
	if x := cc.TokenExchange; x != nil {
		spec.TokenExchange = &connections.TokenExchange{TokenURL: x.TokenURL, ClientID: sec("client_id", x.ClientID),
			ClientSecret: sec("client_secret", x.ClientSecret), AuthMethod: x.AuthMethod,
			Scopes: x.Scopes, Audience: x.Audience, Resource: x.Resource}
	}
	if r := cc.ResourceToken; r != nil {
		spec.ResourceToken = &connections.ResourceToken{Audience: r.Audience, TTL: time.Duration(r.TTL)}
	}
	for _, h := range cc.Headers {
		spec.Headers = append(spec.Headers, connections.Header{Name: h.Name, Value: sec("header "+h.Name, h.Value)})
	}
	for _, m := range cc.ScopeMap {
		spec.ScopeMap = append(spec.ScopeMap, connections.ScopeMapping{Scope: m.Scope, Downstream: m.Downstream})
	}
	if err != nil {
		return nil, err
	}
	opts := a.connOptions()
	if spec.OAuth2 != nil && spec.OAuth2.RefreshToken != "" {
		st := ctx.Storage()
		key := "mcp/refresh_tokens/" + tenant + "/" + cc.Name
		log := a.logger.Named("connections")
		opts.LoadRefreshToken = func(c context.Context) (string, error) {
			b, err := st.Load(c, key)
			if errors.Is(err, fs.ErrNotExist) {
				return "", nil
			}
			return string(b), err
		}
		opts.StoreRefreshToken = func(c context.Context, tok string) error { return st.Store(c, key, []byte(tok)) }
		opts.OnPersistError = func(err error) {
			log.Error("rotated refresh token not persisted", zap.String("tenant", tenant), zap.String("connection", cc.Name), zap.Error(err))
		}
	}
	return connections.New(spec, opts)
}

// serverConnection returns the connection whose credentials a server's
// upstream gets: its configured one, or a resource token minted for its
// upstream's origin (protected servers without a connection). Anonymous
// servers without a connection get nothing: there is no agent to speak for.
func (a *App) serverConnection(cfg *ServerConfig) (*connections.Connection, error) {
	if cfg.Connection != "" {
		conn := a.conns[cfg.Tenant][cfg.Connection]
		if conn == nil {
			return nil, fmt.Errorf("tenant %s has no connection %s", cfg.Tenant, cfg.Connection)
		}
		if cfg.Anonymous && conn.Kind() == connections.KindTokenExchange {
			return nil, fmt.Errorf("connection %s exchanges the agent's token, but the server is anonymous (no agent token)", cfg.Connection)
		}
		return conn, nil
	}
	if cfg.Anonymous {
		return nil, nil
	}
	u, err := url.Parse(cfg.Upstream)
	if err != nil {
		return nil, err
	}
	var ttl time.Duration
	if a.ResourceTokens != nil {
		ttl = time.Duration(a.ResourceTokens.TTL)
	}
	return connections.New(connections.Spec{
		Name:          "resource_token:" + cfg.Name,
		Tenant:        cfg.Tenant,
		ResourceToken: &connections.ResourceToken{Audience: u.Scheme + "://" + u.Host, TTL: ttl},
	}, a.connOptions())
}

func (a *App) cleanupConnections() {
	if a.connCacheKey != "" {
		_, _ = connCachePool.Delete(a.connCacheKey)
		a.connCacheKey = ""
	}
}
