package caddymcp

import (
	"fmt"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddymcp/gateway/connections"
	"github.com/caddymcp/gateway/policy"
	"github.com/caddymcp/gateway/sessions"
	"github.com/caddymcp/gateway/tokens"
)

func init() {
	caddy.RegisterModule(new(App))
}

// App is the `mcp` app: the gateway state shared by every site — issuers,
// tenants and their connections, policies and caches. Handlers
// (`mcp_gateway`) find it with ctx.App("mcp").
type App struct {
	// A label for policy conditions; default "default".
	Environment string `json:"environment,omitempty"`
	// Authorization servers whose tokens agents present (all tenants).
	Issuers []*IssuerConfig `json:"issuers,omitempty"`
	// The gateway as an issuer of resource tokens.
	ResourceTokens *ResourceTokensConfig `json:"resource_tokens,omitempty"`
	// Cache budget.
	Cache *CacheConfig `json:"cache,omitempty"`
	// Tenants with their issuers and connections.
	Tenants []*TenantConfig `json:"tenants,omitempty"`
	// Key sealing Mcp-Session-Id values: 32 random bytes, base64 (usually
	// a {file.*} or {env.*} placeholder). Default: generated once and kept
	// in Caddy storage, so instances sharing the storage share it.
	SessionKey string `json:"session_key,omitempty"`
	// Policies, in configuration order (order never changes a decision:
	// deny wins).
	Policies []*PolicyConfig `json:"policies,omitempty"`

	tenants   map[string]*TenantConfig
	tenantIdx map[string]*TenantConfig // findTenant's index (before provisioning)
	logger    *zap.Logger
	ctx       caddy.Context

	auth     *authState
	policies *policy.Engine
	audit    *zap.Logger
	sealer   *sessions.Sealer
	idle     *idleTracker
	idleHeld bool

	minter       *tokens.Minter
	connCache    *tokens.ConnCache
	connCacheKey string
	conns        map[string]map[string]*connections.Connection // tenant -> name

	mu         sync.Mutex
	servers    map[string]bool // names provisioned by mcp_gateway handlers
	serverObjs map[string]*server
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "mcp",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision sets defaults and checks the configuration.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger()
	if a.Environment == "" {
		a.Environment = "default"
	}
	if err := a.checkConfig(); err != nil {
		return err
	}
	a.tenants = make(map[string]*TenantConfig, len(a.Tenants))
	for _, t := range a.Tenants {
		a.tenants[t.Name] = t
	}
	a.audit = a.logger.Named("audit")
	pols := make([]policy.Policy, len(a.Policies))
	for i, p := range a.Policies {
		pols[i] = *p
	}
	engine, err := policy.Compile(pols, a.Environment, policy.Options{
		KnownTenant: func(name string) bool { return a.tenants[name] != nil },
	})
	if err != nil {
		return err
	}
	a.policies = engine
	if err := a.provisionSessions(ctx); err != nil {
		return fmt.Errorf("sessions: %v", err)
	}
	if err := a.provisionAuth(); err != nil {
		return err
	}
	if err := a.provisionMinter(ctx); err != nil {
		return err
	}
	if err := a.provisionConnections(ctx); err != nil {
		return err
	}
	return a.provisionMetrics(ctx)
}

// Cleanup releases shared state held by this config.
func (a *App) Cleanup() error {
	a.cleanupAuth()
	a.cleanupSessions()
	a.cleanupConnections()
	return nil
}

// Tenant returns the named tenant, or nil.
func (a *App) Tenant(name string) *TenantConfig {
	return a.tenants[name]
}

// Start implements caddy.App. Every handler has been provisioned by now,
// so this is where policies naming servers are checked.
func (a *App) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := validatePolicyServers(a.Policies, a.servers); err != nil {
		return err
	}
	// The compiled engine is all that is used from here on; the decoded
	// policies (Caddy keeps its own copy of the config for the admin API)
	// would only add to the live heap the GC walks (100 000 policies:
	// ~20 MB).
	a.Policies = nil
	return nil
}

// Stop implements caddy.App.
func (a *App) Stop() error { return nil }

// appFromContext returns the mcp app, provisioning it (with an empty
// configuration when the Caddyfile has no global `mcp` block).
func appFromContext(ctx caddy.Context) (*App, error) {
	v, err := ctx.App("mcp")
	if err != nil {
		return nil, fmt.Errorf("loading the mcp app: %w", err)
	}
	return v.(*App), nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)

// registerServer records a server provisioned by a handler: names are
// unique across every mcp_gateway of the config (policies and resource
// tokens name servers), and Start checks that policies name existing ones.
func (a *App) registerServer(s *server) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.servers == nil {
		a.servers = make(map[string]bool)
		a.serverObjs = make(map[string]*server)
	}
	if a.servers[s.cfg.Name] {
		return fmt.Errorf("server name %s is used twice (server names are unique across all mcp_gateway handlers)", s.cfg.Name)
	}
	a.servers[s.cfg.Name] = true
	a.serverObjs[s.cfg.Name] = s
	return nil
}

// serverByName returns a provisioned server, or nil.
func (a *App) serverByName(name string) *server {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.serverObjs[name]
}
