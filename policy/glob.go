package policy

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Glob is a compiled name pattern, used for server, tenant, scope, agent
// and item (tool, resource, prompt) patterns.
//
// Syntax: `*` matches any run of characters, including the empty run and
// including `/`, `:` and `.` (so `client:https://*.example.com/*` matches
// `https://app.example.com/oauth/client.json`, and `mcp:write:*` matches
// `mcp:write:invoices`); `?` matches exactly one character (one Unicode code
// point). Every other character matches itself, case-sensitively. There is no
// escape syntax and there are no character classes: `[`, `]`, `{`, `}` and
// `\` are literal. A pattern without `*` or `?` is an exact name and is
// served from hash indexes.
//
// URL patterns: in a pattern that starts with a literal scheme followed by
// `://` (e.g. `https://*.example.com/*`, `file:///*`), the scheme and
// authority (up to the first `/` after `://`) are matched separately from
// the rest, and the value's authority ends at its first `/`, `?` or `#`.
// So a `*` in the host part never crosses into the path, and
// `https://*.example.com/*` does not match
// `https://evil.com/x.example.com/` (a client ID anyone could host). A
// value whose authority contains `@` or `\` never matches a URL pattern
// whose authority does not contain that character.
type Glob struct {
	pat  string
	kind globKind
	lit  string // literal for exact / prefix / suffix / contains kinds
	// URL patterns (kind globURL): authority and rest.
	auth, rest *Glob
}

type globKind uint8

const (
	globExact    globKind = iota // no metacharacters
	globAny                      // "*"
	globPrefix                   // "abc*"
	globSuffix                   // "*abc"
	globContains                 // "*abc*"
	globGeneral                  // anything else
	globURL                      // scheme://authority matched apart from the path
)

// CompileGlob compiles a pattern. It fails on empty patterns and patterns
// containing whitespace or control characters.
func CompileGlob(pat string) (Glob, error) { return compileGlob(pat, true) }

func compileGlob(pat string, urlAware bool) (Glob, error) {
	if pat == "" {
		return Glob{}, fmt.Errorf("empty pattern")
	}
	if !utf8.ValidString(pat) {
		return Glob{}, fmt.Errorf("pattern %q is not valid UTF-8", pat)
	}
	for _, r := range pat {
		if r <= ' ' || r == 0x7f {
			return Glob{}, fmt.Errorf("pattern %q contains whitespace or a control character", pat)
		}
	}
	g := Glob{pat: pat}
	if !strings.ContainsAny(pat, "*?") {
		g.kind, g.lit = globExact, pat
		return g, nil
	}
	if i := strings.Index(pat, "://"); urlAware && i > 0 && !strings.ContainsAny(pat[:i], "*?") {
		authEnd := len(pat)
		if j := strings.IndexByte(pat[i+3:], '/'); j >= 0 {
			authEnd = i + 3 + j
		}
		a, err := compileGlob(pat[:authEnd], false)
		if err != nil {
			return Glob{}, err
		}
		g.kind, g.auth = globURL, &a
		if authEnd < len(pat) {
			r, err := compileGlob(pat[authEnd:], false)
			if err != nil {
				return Glob{}, err
			}
			g.rest = &r
		}
		return g, nil
	}
	// Collapse runs of '*' (semantically identical).
	for strings.Contains(pat, "**") {
		pat = strings.ReplaceAll(pat, "**", "*")
	}
	switch {
	case pat == "*":
		g.kind = globAny
	case strings.ContainsRune(pat, '?'):
		g.kind = globGeneral
	case strings.Count(pat, "*") == 1 && strings.HasSuffix(pat, "*"):
		g.kind, g.lit = globPrefix, pat[:len(pat)-1]
	case strings.Count(pat, "*") == 1 && strings.HasPrefix(pat, "*"):
		g.kind, g.lit = globSuffix, pat[1:]
	case strings.Count(pat, "*") == 2 && strings.HasPrefix(pat, "*") && strings.HasSuffix(pat, "*"):
		g.kind, g.lit = globContains, pat[1:len(pat)-1]
	default:
		g.kind = globGeneral
	}
	g.pat = pat
	return g, nil
}

// MustGlob is CompileGlob that panics on error (for tests and constants).
func MustGlob(pat string) Glob {
	g, err := CompileGlob(pat)
	if err != nil {
		panic(err)
	}
	return g
}

// String returns the pattern.
func (g Glob) String() string { return g.pat }

// IsExact reports whether the pattern has no metacharacters.
func (g Glob) IsExact() bool { return g.kind == globExact }

// Match reports whether s matches the whole pattern.
func (g Glob) Match(s string) bool {
	switch g.kind {
	case globExact:
		return s == g.lit
	case globAny:
		return true
	case globPrefix:
		return strings.HasPrefix(s, g.lit)
	case globSuffix:
		return strings.HasSuffix(s, g.lit)
	case globContains:
		return strings.Contains(s, g.lit)
	case globURL:
		return g.matchURL(s)
	default:
		return wildMatch(g.pat, s)
	}
}

func (g Glob) matchURL(s string) bool {
	i := strings.Index(s, "://")
	if i < 0 {
		return false
	}
	end := len(s)
	if j := strings.IndexAny(s[i+3:], "/?#"); j >= 0 {
		end = i + 3 + j
	}
	auth := s[:end]
	for _, c := range []string{"@", "\\"} {
		if strings.Contains(auth, c) && !strings.Contains(g.auth.pat, c) {
			return false
		}
	}
	if !g.auth.Match(auth) {
		return false
	}
	if g.rest == nil {
		return end == len(s)
	}
	return g.rest.Match(s[end:])
}

// wildMatch is the classic iterative wildcard matcher with a single
// backtracking point: O(len(p)*len(s)) worst case, no allocation, no
// recursion. '?' consumes one UTF-8 code point.
func wildMatch(p, s string) bool {
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if pi < len(p) {
			switch c := p[pi]; c {
			case '*':
				starP, starS = pi, si
				pi++
				continue
			case '?':
				_, n := utf8.DecodeRuneInString(s[si:])
				pi++
				si += n
				continue
			default:
				if c == s[si] {
					pi++
					si++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		// Backtrack: let the last '*' swallow one more code point.
		_, n := utf8.DecodeRuneInString(s[starS:])
		starS += n
		pi, si = starP+1, starS
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// globList is a list of patterns; empty means "everything".
type globList []Glob

// String lists the patterns as configured, space-separated.
func (l globList) String() string {
	pats := make([]string, len(l))
	for i := range l {
		pats[i] = l[i].pat
	}
	return strings.Join(pats, " ")
}

func (l globList) match(s string) bool {
	if len(l) == 0 {
		return true
	}
	for i := range l {
		if l[i].Match(s) {
			return true
		}
	}
	return false
}

func (l globList) allExact() bool {
	if len(l) == 0 {
		return false
	}
	for i := range l {
		if !l[i].IsExact() {
			return false
		}
	}
	return true
}
