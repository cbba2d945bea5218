package policy

import (
	"fmt"
	"strings"
)

// Rule is one `tool NAME SCOPES...`, `resource URIGLOB SCOPES...` or
// `prompt NAME SCOPES...` line of a server block. Match is a glob (see Glob);
// Scopes are literal scope names (possibly none: the item needs nothing
// beyond the server's `require`, and later rules are not consulted).
type Rule struct {
	Match  string   `json:"match"`
	Scopes []string `json:"scopes,omitempty"`
}

// Rules is a compiled, immutable, first-match-wins list of item rules.
// The zero value and nil have no rules.
type Rules struct {
	rules []compiledRule
	exact map[string]int // exact name -> index of its first rule
	globs []int          // indexes of glob rules, in order
}

type compiledRule struct {
	glob   Glob
	scopes []string
}

// CompileRules compiles item rules (keep configuration order).
func CompileRules(rules []Rule) (*Rules, error) {
	r := &Rules{exact: make(map[string]int)}
	for i, ru := range rules {
		g, err := CompileGlob(ru.Match)
		if err != nil {
			return nil, fmt.Errorf("rule #%d %q: %v", i+1, ru.Match, err)
		}
		for _, s := range ru.Scopes {
			if s == "" || strings.ContainsAny(s, " \t\r\n*?") {
				return nil, fmt.Errorf("rule %q: bad scope %q", ru.Match, s)
			}
		}
		r.rules = append(r.rules, compiledRule{glob: g, scopes: append([]string(nil), ru.Scopes...)})
		if g.IsExact() {
			if _, dup := r.exact[ru.Match]; !dup {
				r.exact[ru.Match] = i
			}
		} else {
			r.globs = append(r.globs, i)
		}
	}
	return r, nil
}

// Len returns the number of rules.
func (r *Rules) Len() int {
	if r == nil {
		return 0
	}
	return len(r.rules)
}

// Lookup returns the scopes the first rule matching name requires, and
// whether any rule matched. No match means the item needs nothing beyond
// the server's `require` scopes. The returned slice must not be modified.
func (r *Rules) Lookup(name string) (scopes []string, matched bool) {
	i := r.find(name)
	if i < 0 {
		return nil, false
	}
	return r.rules[i].scopes, true
}

func (r *Rules) find(name string) int {
	if r == nil || len(r.rules) == 0 {
		return -1
	}
	best := -1
	if i, ok := r.exact[name]; ok {
		best = i
	}
	for _, i := range r.globs {
		if best >= 0 && i > best {
			break
		}
		if r.rules[i].glob.Match(name) {
			return i
		}
	}
	return best
}

// Allowed reports whether an agent whose effective scopes are effective
// may see / use the item name: every scope of its first matching rule must
// be in effective. It does not allocate; effective is usually a handful of
// scopes (Decision.Effective).
func (r *Rules) Allowed(name string, effective []string) bool {
	scopes, _ := r.Lookup(name)
	for _, s := range scopes {
		if !contains(effective, s) {
			return false
		}
	}
	return true
}

// Need returns require followed by the item's scopes (the Input.Need of a
// request for that item). It allocates only when both are non-empty.
func (r *Rules) Need(require []string, name string) []string {
	scopes, _ := r.Lookup(name)
	if len(scopes) == 0 {
		return require
	}
	if len(require) == 0 {
		return scopes
	}
	out := make([]string, 0, len(require)+len(scopes))
	return append(append(out, require...), scopes...)
}
