package connections

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// scopeRule is one compiled scope_map line.
type scopeRule struct {
	pat        string
	glob       bool // contains * or ?
	downstream []string
}

func compileScopeRule(m ScopeMapping) (scopeRule, error) {
	if m.Scope == "" {
		return scopeRule{}, errors.New("empty gateway scope")
	}
	if !utf8.ValidString(m.Scope) {
		return scopeRule{}, errors.New("gateway scope is not UTF-8")
	}
	if len(m.Downstream) == 0 {
		return scopeRule{}, errors.New("no downstream scope")
	}
	for _, d := range m.Downstream {
		if d == "" || strings.ContainsAny(d, " \t\r\n\"\\") {
			return scopeRule{}, errors.New("invalid downstream scope")
		}
	}
	return scopeRule{
		pat:        m.Scope,
		glob:       strings.ContainsAny(m.Scope, "*?"),
		downstream: sortedUnique(m.Downstream),
	}, nil
}

func (r *scopeRule) match(s string) bool {
	if !r.glob {
		return r.pat == s
	}
	return globMatch(r.pat, s)
}

// globMatch: `*` matches any run of characters (including none), `?` one
// character (code point); everything else matches itself. Iterative, with
// backtracking to the last star only: O(len(p)*len(s)) worst case.
func globMatch(p, s string) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		if pi < len(p) {
			switch p[pi] {
			case '*':
				star, mark = pi, si
				pi++
				continue
			case '?':
				_, n := utf8.DecodeRuneInString(s[si:])
				pi++
				si += n
				continue
			default:
				if p[pi] == s[si] {
					pi++
					si++
					continue
				}
			}
		}
		if star < 0 {
			return false
		}
		_, n := utf8.DecodeRuneInString(s[mark:])
		mark += n
		pi, si = star+1, mark
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
