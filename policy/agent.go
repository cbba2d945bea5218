package policy

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Agent identifies the caller, from the claims of its verified access token.
// An anonymous caller (a server marked `anonymous`, no token) has every
// field empty.
type Agent struct {
	ClientID string
	Subject  string
	Groups   []string
	// Claims are the token's claims as decoded from JSON (string, float64,
	// json.Number, bool, []any, map[string]any, or []string).
	Claims map[string]any
	// Claim, when set, is used instead of Claims to look a claim up.
	Claim func(name string) (any, bool)
}

func (a *Agent) claim(name string) (any, bool) {
	if a.Claim != nil {
		return a.Claim(name)
	}
	if a.Claims == nil {
		return nil, false
	}
	if v, ok := a.Claims[name]; ok {
		return v, true
	}
	// Dotted path into nested objects, e.g. realm_access.roles.
	if !strings.Contains(name, ".") {
		return nil, false
	}
	var cur any = a.Claims
	for part := range strings.SplitSeq(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

type agentKind uint8

const (
	agentAny agentKind = iota
	agentClient
	agentGroup
	agentSub
	agentClaim
)

type agentMatcher struct {
	kind  agentKind
	claim string // claim name for agentClaim
	value Glob
	src   string
}

func (m agentMatcher) indexable() bool {
	return m.kind != agentAny && m.kind != agentClaim && m.value.IsExact()
}

// parseAgent parses one agent matcher:
//
//   - every agent, including anonymous callers
//     client:GLOB          the token's client id (agent_claim)
//     group:GLOB           one of the token's groups (groups_claim)
//     sub:GLOB             the token's subject
//     claim:NAME=GLOB      a claim; NAME may be a dotted path into objects
func parseAgent(s string) (agentMatcher, error) {
	if s == "*" {
		return agentMatcher{kind: agentAny, src: s}, nil
	}
	kindStr, rest, ok := strings.Cut(s, ":")
	if !ok {
		return agentMatcher{}, fmt.Errorf("bad agent matcher %q: want client:ID, group:NAME, sub:SUBJECT, claim:NAME=VALUE or *", s)
	}
	m := agentMatcher{src: s}
	switch kindStr {
	case "client":
		m.kind = agentClient
	case "group":
		m.kind = agentGroup
	case "sub":
		m.kind = agentSub
	case "claim":
		m.kind = agentClaim
		name, val, ok := strings.Cut(rest, "=")
		if !ok || name == "" {
			return agentMatcher{}, fmt.Errorf("bad agent matcher %q: want claim:NAME=VALUE", s)
		}
		m.claim, rest = name, val
	default:
		return agentMatcher{}, fmt.Errorf("bad agent matcher %q: unknown kind %q (want client, group, sub or claim)", s, kindStr)
	}
	g, err := CompileGlob(rest)
	if err != nil {
		return agentMatcher{}, fmt.Errorf("bad agent matcher %q: %v", s, err)
	}
	m.value = g
	return m, nil
}

// match reports whether the agent matches. Identity values that are absent
// (empty client id, subject or group; missing claim) never match, so
// `client:*` means "any agent with a client id", not "anonymous too".
func (m *agentMatcher) match(a *Agent) bool {
	switch m.kind {
	case agentAny:
		return true
	case agentClient:
		return a.ClientID != "" && m.value.Match(a.ClientID)
	case agentSub:
		return a.Subject != "" && m.value.Match(a.Subject)
	case agentGroup:
		for _, g := range a.Groups {
			if g != "" && m.value.Match(g) {
				return true
			}
		}
		return false
	case agentClaim:
		v, ok := a.claim(m.claim)
		return ok && claimMatch(m.value, v)
	}
	return false
}

// claimMatch matches a claim value: strings directly; numbers in their
// shortest decimal form (7, 1.5); booleans as true/false; arrays when any
// element matches. Objects and null never match.
func claimMatch(g Glob, v any) bool {
	switch v := v.(type) {
	case string:
		return g.Match(v)
	case []any:
		for _, e := range v {
			if _, nested := e.([]any); !nested && claimMatch(g, e) {
				return true
			}
		}
		return false
	case []string:
		for _, e := range v {
			if g.Match(e) {
				return true
			}
		}
		return false
	case bool:
		return g.Match(strconv.FormatBool(v))
	case float64:
		return g.Match(strconv.FormatFloat(v, 'f', -1, 64))
	case float32:
		return g.Match(strconv.FormatFloat(float64(v), 'f', -1, 32))
	case json.Number:
		if f, err := v.Float64(); err == nil {
			return g.Match(strconv.FormatFloat(f, 'f', -1, 64)) || g.Match(v.String())
		}
		return g.Match(v.String())
	case int:
		return g.Match(strconv.Itoa(v))
	case int64:
		return g.Match(strconv.FormatInt(v, 10))
	}
	return false
}
