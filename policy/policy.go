// Package policy decides who may use which MCP servers, tenants, scopes,
// tools, resources and prompts. It has no Caddy imports.
package policy

// Policy is one allow or deny rule, as configured.
type Policy struct {
	Name string `json:"name"`
	// "allow" or "deny".
	Effect string `json:"effect"`
	// "enforce" (default) or "report".
	Mode string `json:"mode,omitempty"`
	// Agent matchers: client:ID, group:NAME, sub:SUBJECT, claim:NAME=VALUE
	// or *. IDs and values may be globs.
	Agents []string `json:"agents,omitempty"`
	// Server-name globs; empty means all.
	Servers []string `json:"servers,omitempty"`
	// Tenant-name globs; empty means all.
	Tenants []string `json:"tenants,omitempty"`
	// Scopes granted (allow) or taken away (deny); globs.
	Scopes []string `json:"scopes,omitempty"`
	// Client IP ranges (CIDR or single address).
	IP []string `json:"ip,omitempty"`
	// Environments the policy applies in.
	Environments []string `json:"environments,omitempty"`
}
