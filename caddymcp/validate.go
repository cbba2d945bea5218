package caddymcp

// Validate checks the app configuration (filled in by the parser work).
func (a *App) Validate() error { return nil }

// validateServers checks servers against the app (placeholder until the
// parser work lands its full version here).
func validateServers(servers []*ServerConfig, app *App) error { return nil }

// validatePolicyServers checks that policies name existing servers.
func validatePolicyServers(policies []*PolicyConfig, servers map[string]bool) error { return nil }
