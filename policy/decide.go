package policy

import (
	"fmt"
	"net/netip"
	"strings"
)

// Input is what a decision is made on.
type Input struct {
	Agent  Agent
	Server string // server name
	Tenant string // the server's tenant
	// TokenScopes are the scopes of the agent's access token.
	TokenScopes []string
	// ClientIP is the client address (after trusted-proxy handling); the
	// zero Addr means unknown.
	ClientIP netip.Addr
	// Need are the scopes the request needs: the server's `require` scopes
	// plus the scopes of the first matching tool/resource/prompt rule.
	Need []string
}

// Outcome is the result class of a decision.
type Outcome string

const (
	// OutcomeAllow: every needed scope is effective.
	OutcomeAllow Outcome = "allow"
	// OutcomeDeny: policy refuses (nothing grants access, a deny takes a
	// needed scope, or no policy grants a needed scope).
	OutcomeDeny Outcome = "deny"
	// OutcomeStepUp: policy would grant every needed scope, but the token
	// lacks some of them: answer 403 insufficient_scope.
	OutcomeStepUp Outcome = "step_up"
)

// Decision is the result of Decide.
type Decision struct {
	Outcome Outcome `json:"outcome"`
	// Allowed is Outcome == OutcomeAllow.
	Allowed bool `json:"allowed"`
	// Effective = token scopes ∩ scopes granted by matching enforced allow
	// policies − scopes taken by matching enforced deny policies, in token
	// order. Computed for every outcome.
	Effective []string `json:"effective"`
	// Policy names the deciding policy: for allow, the first allow policy
	// granting the request; for deny, the deny policy that took a scope (""
	// when the denial is "nothing grants it"). Empty for step-up.
	Policy string `json:"policy,omitempty"`
	// Reason is a human explanation ("" when allowed).
	Reason string `json:"reason,omitempty"`
	// Missing (step-up only): needed scopes policy grants but the token lacks.
	Missing []string `json:"missing,omitempty"`
	// StepUpScopes (step-up only): every scope the request needs, sorted and
	// de-duplicated, for WWW-Authenticate scope="...".
	StepUpScopes []string `json:"step_up_scopes,omitempty"`
	// Matched names every matching policy (enforced and report), in
	// configuration order.
	Matched []string `json:"matched"`
	// WouldDeny is set when the outcome is allow but would not be if the
	// matching `mode report` policies were enforced. WouldPolicy names the
	// report policy responsible and WouldReason says why. Report policies
	// never change Outcome.
	WouldDeny   bool   `json:"would_deny,omitempty"`
	WouldPolicy string `json:"would_policy,omitempty"`
	WouldReason string `json:"would_reason,omitempty"`
}

// AuditDecision is the label for audit logs and metrics: "allow", "deny",
// "step_up" or "would_deny" (allowed, but a report policy would deny).
func (d *Decision) AuditDecision() string {
	if d.Allowed && d.WouldDeny {
		return "would_deny"
	}
	return string(d.Outcome)
}

// Decide evaluates the policies for one request. It is safe for concurrent
// use. Cost depends on the policies indexed under the request's server,
// tenant and agent identities (plus the usually small list of policies
// whose server and tenant patterns are all globs), not on the total number
// of policies, servers or tenants.
//
// Semantics:
//   - A policy matches when its environment applies, the server and tenant
//     match its globs, the agent matches one of its agent matchers and the
//     client IP is in one of its ranges. Omitted servers, tenants or agents
//     mean `*` (an omitted agents list matches anonymous callers too).
//   - A policy with an `ip` list does not match an unknown client IP when it
//     is an allow, and does match when it is a deny (fail closed).
//   - An allow policy without `scopes` grants every scope; a deny policy
//     without `scopes` denies the request whatever it needs.
//   - Deny wins; nothing matching means denied ("no policy grants access").
//   - A needed scope that a deny takes, or that no allow grants, denies the
//     request (step-up could not help). Otherwise a needed scope granted by
//     policy but absent from the token is a step-up.
//   - `mode report` policies are evaluated too but only feed WouldDeny.
func (e *Engine) Decide(in *Input) Decision {
	var buf [32]*cpol
	matched := e.collect(in, buf[:0])
	return e.decide(in, matched)
}

func (e *Engine) collect(in *Input, out []*cpol) []*cpol {
	if b := e.byServer[in.Server]; b != nil {
		out = b.collect(in, out)
	}
	if b := e.byTenant[in.Tenant]; b != nil {
		out = b.collect(in, out)
	}
	out = e.global.collect(in, out)
	// Configuration order (insertion sort; the list is short).
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].idx < out[j-1].idx; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func (b *bucket) collect(in *Input, out []*cpol) []*cpol {
	a := &in.Agent
	if a.ClientID != "" && b.byClient != nil {
		out = collectIndexed(b.byClient[a.ClientID], in, out)
	}
	if a.Subject != "" && b.bySub != nil {
		out = collectIndexed(b.bySub[a.Subject], in, out)
	}
	if b.byGroup != nil {
		for _, g := range a.Groups {
			if g != "" {
				out = collectIndexed(b.byGroup[g], in, out)
			}
		}
	}
	for _, cp := range b.other {
		if cp.matchTarget(in) && cp.matchAgent(a) {
			out = append(out, cp)
		}
	}
	return out
}

// collectIndexed adds candidates found through an exact agent key; the
// agent already matches one of their matchers.
func collectIndexed(cands []*cpol, in *Input, out []*cpol) []*cpol {
	for _, cp := range cands {
		if cp.multiKey && contains(out, cp) {
			continue
		}
		if cp.matchTarget(in) {
			out = append(out, cp)
		}
	}
	return out
}

func (cp *cpol) matchTarget(in *Input) bool {
	return cp.servers.match(in.Server) && cp.tenants.match(in.Tenant) && cp.matchIP(in.ClientIP)
}

func (cp *cpol) matchAgent(a *Agent) bool {
	if len(cp.agents) == 0 {
		return true
	}
	for i := range cp.agents {
		if cp.agents[i].match(a) {
			return true
		}
	}
	return false
}

func (cp *cpol) matchIP(ip netip.Addr) bool {
	if len(cp.ips) == 0 {
		return true
	}
	if !ip.IsValid() {
		return cp.deny
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range cp.ips {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (cp *cpol) covers(scope string) bool {
	return len(cp.scopes) == 0 || cp.scopes.match(scope)
}

// verdict is one evaluation over a set of matching policies.
type verdict struct {
	outcome Outcome
	policy  *cpol
	reason  string
	missing []string
}

func active(cp *cpol, withReport bool) bool { return withReport || !cp.report }

func granter(matched []*cpol, scope string, withReport bool) *cpol {
	for _, cp := range matched {
		if !cp.deny && active(cp, withReport) && cp.covers(scope) {
			return cp
		}
	}
	return nil
}

func denier(matched []*cpol, scope string, withReport bool) *cpol {
	for _, cp := range matched {
		if cp.deny && active(cp, withReport) && cp.covers(scope) {
			return cp
		}
	}
	return nil
}

func evaluate(in *Input, matched []*cpol, withReport bool, wantMissing bool) verdict {
	var firstAllow *cpol
	for _, cp := range matched {
		if !active(cp, withReport) {
			continue
		}
		if cp.deny && len(cp.scopes) == 0 {
			return verdict{outcome: OutcomeDeny, policy: cp, reason: fmt.Sprintf("denied by policy %q", cp.name)}
		}
		if !cp.deny && firstAllow == nil {
			firstAllow = cp
		}
	}
	if firstAllow == nil {
		return verdict{outcome: OutcomeDeny, reason: "no policy grants access"}
	}
	v := verdict{outcome: OutcomeAllow, policy: firstAllow}
	first := true
	for _, s := range in.Need {
		if d := denier(matched, s, withReport); d != nil {
			return verdict{outcome: OutcomeDeny, policy: d, reason: fmt.Sprintf("scope %q is denied by policy %q", s, d.name)}
		}
		g := granter(matched, s, withReport)
		if g == nil {
			return verdict{outcome: OutcomeDeny, reason: fmt.Sprintf("no policy grants scope %q", s)}
		}
		if first {
			v.policy, first = g, false
		}
		if !contains(in.TokenScopes, s) {
			v.outcome = OutcomeStepUp
			if !wantMissing {
				continue
			}
			if !contains(v.missing, s) {
				v.missing = append(v.missing, s)
			}
		}
	}
	if v.outcome == OutcomeStepUp {
		v.policy = nil
		v.reason = "token lacks scope " + strings.Join(v.missing, " ")
	}
	return v
}

func (e *Engine) decide(in *Input, matched []*cpol) Decision {
	var d Decision
	if len(matched) > 0 {
		d.Matched = make([]string, len(matched))
		for i, cp := range matched {
			d.Matched[i] = cp.name
		}
	}
	hasReportDeny := false
	for _, cp := range matched {
		if cp.report && cp.deny {
			hasReportDeny = true
		}
	}
	for _, s := range in.TokenScopes {
		if granter(matched, s, false) != nil && denier(matched, s, false) == nil && !contains(d.Effective, s) {
			if d.Effective == nil {
				d.Effective = make([]string, 0, len(in.TokenScopes))
			}
			d.Effective = append(d.Effective, s)
		}
	}
	v := evaluate(in, matched, false, true)
	d.Outcome = v.outcome
	d.Allowed = v.outcome == OutcomeAllow
	d.Reason = v.reason
	if v.policy != nil {
		d.Policy = v.policy.name
	}
	if v.outcome == OutcomeStepUp {
		d.Missing = v.missing
		d.StepUpScopes = sortedCopy(in.Need)
	}
	// Report mode: only a report deny can turn an allow into a refusal
	// (report allows only add grants).
	if d.Allowed && hasReportDeny {
		w := evaluate(in, matched, true, false)
		if w.outcome != OutcomeAllow {
			d.WouldDeny = true
			d.WouldReason = w.reason
			if w.policy != nil {
				d.WouldPolicy = w.policy.name
			}
		}
	}
	return d
}
