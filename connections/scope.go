package connections

import (
	"errors"
	"strings"

	"github.com/caddymcp/gateway/policy"
)

// scopeRule is one compiled scope_map line. The gateway scope is a glob
// with the policy engine's syntax (package policy), so scope_map and
// policies read scopes the same way.
type scopeRule struct {
	glob       policy.Glob
	downstream []string
}

func compileScopeRule(m ScopeMapping) (scopeRule, error) {
	if m.Scope == "" {
		return scopeRule{}, errors.New("empty gateway scope")
	}
	g, err := policy.CompileGlob(m.Scope)
	if err != nil {
		return scopeRule{}, err
	}
	if len(m.Downstream) == 0 {
		return scopeRule{}, errors.New("no downstream scope")
	}
	for _, d := range m.Downstream {
		if d == "" || strings.ContainsAny(d, " \t\r\n\"\\") {
			return scopeRule{}, errors.New("invalid downstream scope")
		}
	}
	return scopeRule{glob: g, downstream: sortedUnique(m.Downstream)}, nil
}

func (r *scopeRule) match(s string) bool { return r.glob.Match(s) }
