package caddymcp

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
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
	// Policies, in configuration order (order never changes a decision:
	// deny wins).
	Policies []*PolicyConfig `json:"policies,omitempty"`

	tenants map[string]*TenantConfig
	logger  *zap.Logger
	ctx     caddy.Context
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
	if err := a.Validate(); err != nil {
		return err
	}
	a.tenants = make(map[string]*TenantConfig, len(a.Tenants))
	for _, t := range a.Tenants {
		a.tenants[t.Name] = t
	}
	return nil
}

// Tenant returns the named tenant, or nil.
func (a *App) Tenant(name string) *TenantConfig {
	return a.tenants[name]
}

// Start implements caddy.App.
func (a *App) Start() error { return nil }

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
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
	_ caddy.Validator   = (*App)(nil)
)
