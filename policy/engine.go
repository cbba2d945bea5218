package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// DefaultEnvironment is the environment label used when none is configured.
const DefaultEnvironment = "default"

// Options tune Compile.
type Options struct {
	// KnownServer and KnownTenant, when set, are used to refuse a policy
	// that names (without a glob) a server or tenant that does not exist.
	KnownServer func(name string) bool
	KnownTenant func(name string) bool
}

// Engine is a compiled, immutable, concurrency-safe set of policies.
type Engine struct {
	env      string
	all      []*cpol // every policy, config order (inactive ones included)
	active   int
	byServer map[string]*bucket
	byTenant map[string]*bucket
	global   bucket
}

// cpol is a compiled policy.
type cpol struct {
	idx      int
	name     string
	deny     bool
	report   bool
	inactive bool // environment does not apply
	servers  globList
	tenants  globList
	agents   []agentMatcher // empty: every agent
	scopes   globList       // empty: all scopes (allow: grants all; deny: denies all)
	ips      []netip.Prefix // empty: any IP
	multiKey bool           // indexed under more than one agent key
	// As configured, for Explain only (nil when not set).
	ipSrc, environments []string
}

// bucket holds candidate policies for one index slot, sub-indexed by agent.
type bucket struct {
	byClient map[string][]*cpol
	byGroup  map[string][]*cpol
	bySub    map[string][]*cpol
	other    []*cpol // not indexable by agent (*, globs, claims)
}

// Environment returns the engine's environment label.
func (e *Engine) Environment() string { return e.env }

// Len returns the number of policies active in the engine's environment.
func (e *Engine) Len() int { return e.active }

// Compile validates and compiles policies for the given environment
// ("" means DefaultEnvironment). All errors are returned joined; each names
// its policy. Policies whose `environments` list does not contain the
// environment are kept only for Explain and never evaluated.
func Compile(policies []Policy, environment string, opts Options) (*Engine, error) {
	if environment == "" {
		environment = DefaultEnvironment
	}
	e := &Engine{
		env:      environment,
		byServer: make(map[string]*bucket),
		byTenant: make(map[string]*bucket),
	}
	var errs []error
	seen := make(map[string]bool, len(policies))
	lists := make(listInterner)
	for i := range policies {
		p := policies[i]
		cp, err := compilePolicy(i, p, environment, opts, lists)
		if err == nil && seen[p.Name] {
			err = fmt.Errorf("policy %q: defined twice", p.Name)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		seen[p.Name] = true
		e.all = append(e.all, cp)
		if cp.inactive {
			continue
		}
		e.active++
		e.place(cp)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return e, nil
}

func compilePolicy(i int, p Policy, env string, opts Options, lists listInterner) (*cpol, error) {
	// The compiled form keeps no copy of p: at 100 000 policies every
	// retained word is heap the GC walks on every cycle.
	cp := &cpol{idx: i, name: p.Name, ipSrc: p.IP, environments: p.Environments}
	fail := func(format string, a ...any) error {
		return fmt.Errorf("policy %q: %s", p.Name, fmt.Sprintf(format, a...))
	}
	if p.Name == "" {
		return nil, fmt.Errorf("policy #%d: missing name", i+1)
	}
	if strings.ContainsAny(p.Name, " \t\r\n") {
		return nil, fail("name contains whitespace")
	}
	switch p.Effect {
	case "allow":
	case "deny":
		cp.deny = true
	case "":
		return nil, fail("missing effect (allow or deny)")
	default:
		return nil, fail("effect %q: want allow or deny", p.Effect)
	}
	switch p.Mode {
	case "", "enforce":
	case "report":
		cp.report = true
	default:
		return nil, fail("mode %q: want enforce or report", p.Mode)
	}
	var err error
	if cp.servers, err = lists.compile(p.Servers, "server", opts.KnownServer); err != nil {
		return nil, fail("%v", err)
	}
	if cp.tenants, err = lists.compile(p.Tenants, "tenant", opts.KnownTenant); err != nil {
		return nil, fail("%v", err)
	}
	if cp.scopes, err = lists.compile(p.Scopes, "scope", nil); err != nil {
		return nil, fail("%v", err)
	}
	for _, a := range p.Agents {
		m, err := parseAgent(a)
		if err != nil {
			return nil, fail("%v", err)
		}
		if m.kind == agentAny {
			cp.agents = nil // "*" subsumes everything else
			break
		}
		cp.agents = append(cp.agents, m)
	}
	for _, s := range p.IP {
		pfx, err := parseIP(s)
		if err != nil {
			return nil, fail("%v", err)
		}
		cp.ips = append(cp.ips, pfx)
	}
	if len(p.Environments) > 0 {
		cp.inactive = true
		for _, en := range p.Environments {
			if en == "" || strings.ContainsAny(en, " \t\r\n") {
				return nil, fail("bad environment %q", en)
			}
			if en == env {
				cp.inactive = false
			}
		}
	}
	return cp, nil
}

// listInterner hands out one compiled globList per distinct pattern list of
// a kind within one Compile: 100 000 policies over the same two scopes keep
// one list between them, not 100 000 (each with its own pattern strings)
// for the GC to walk. Compiled lists are never modified after Compile.
type listInterner map[string]globList

func (in listInterner) compile(pats []string, what string, known func(string) bool) (globList, error) {
	if len(pats) == 0 {
		return nil, nil
	}
	key := what + "\x00" + strings.Join(pats, "\x00")
	if l, ok := in[key]; ok {
		return l, nil
	}
	l, err := compileList(pats, what, known)
	if err == nil {
		in[key] = l
	}
	return l, err
}

func compileList(pats []string, what string, known func(string) bool) (globList, error) {
	var out globList
	for _, s := range pats {
		if s == "*" {
			return nil, nil // "*" is the same as no restriction
		}
		g, err := CompileGlob(s)
		if err != nil {
			return nil, fmt.Errorf("bad %s pattern: %v", what, err)
		}
		if g.IsExact() && known != nil && !known(s) {
			return nil, fmt.Errorf("unknown %s %q", what, s)
		}
		out = append(out, g)
	}
	return out, nil
}

func parseIP(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad CIDR %q: %v", s, err)
		}
		if p.Addr().Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("bad CIDR %q: zones are not allowed", s)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad IP %q: %v", s, err)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("bad IP %q: zones are not allowed", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// place puts an active policy into exactly one kind of index slot:
// by exact server name when every server pattern is exact, else by exact
// tenant name when every tenant pattern is exact, else the global bucket.
// So for a given request each policy is reachable from at most one slot.
func (e *Engine) place(cp *cpol) {
	switch {
	case cp.servers.allExact():
		for _, g := range dedupe(cp.servers) {
			e.slot(e.byServer, g).add(cp)
		}
	case cp.tenants.allExact():
		for _, g := range dedupe(cp.tenants) {
			e.slot(e.byTenant, g).add(cp)
		}
	default:
		e.global.add(cp)
	}
}

func dedupe(l globList) []string {
	out := make([]string, 0, len(l))
	for _, g := range l {
		if !contains(out, g.pat) {
			out = append(out, g.pat)
		}
	}
	return out
}

func (e *Engine) slot(m map[string]*bucket, key string) *bucket {
	b := m[key]
	if b == nil {
		b = &bucket{}
		m[key] = b
	}
	return b
}

func (b *bucket) add(cp *cpol) {
	indexable := len(cp.agents) > 0
	for _, a := range cp.agents {
		if !a.indexable() {
			indexable = false
			break
		}
	}
	if !indexable {
		b.other = append(b.other, cp)
		return
	}
	type key struct {
		k agentKind
		v string
	}
	var keys []key
	for _, a := range cp.agents {
		k := key{a.kind, a.value.pat}
		if !contains(keys, k) {
			keys = append(keys, k)
		}
	}
	cp.multiKey = len(keys) > 1
	for _, k := range keys {
		var m *map[string][]*cpol
		switch k.k {
		case agentClient:
			m = &b.byClient
		case agentGroup:
			m = &b.byGroup
		case agentSub:
			m = &b.bySub
		}
		if *m == nil {
			*m = make(map[string][]*cpol)
		}
		(*m)[k.v] = append((*m)[k.v], cp)
	}
}

func contains[T comparable](l []T, v T) bool {
	for _, x := range l {
		if x == v {
			return true
		}
	}
	return false
}

// sortedCopy returns a sorted, de-duplicated copy of l.
func sortedCopy(l []string) []string {
	out := append([]string(nil), l...)
	sort.Strings(out)
	j := 0
	for i, s := range out {
		if i == 0 || s != out[j-1] {
			out[j] = s
			j++
		}
	}
	return out[:j]
}
