package policy

import (
	"fmt"
	"strings"
)

// PolicyTrace says why one policy matched a request or not.
type PolicyTrace struct {
	Name    string `json:"name"`
	Effect  string `json:"effect"`
	Mode    string `json:"mode"`
	Active  bool   `json:"active"` // applies in the engine's environment
	Matched bool   `json:"matched"`
	// Why is a human explanation: the first condition that failed, or what
	// matched.
	Why string `json:"why"`
	// Covers lists the needed scopes this policy grants (allow) or takes
	// (deny), when it matched.
	Covers []string `json:"covers,omitempty"`
}

// Explanation is a decision with a per-policy trace.
type Explanation struct {
	Decision Decision      `json:"decision"`
	Policies []PolicyTrace `json:"policies"`
}

// Explain decides like Decide and additionally traces every configured
// policy (including ones inactive in this environment). It is linear in the
// number of policies: for admin endpoints and CLIs, not the request path.
func (e *Engine) Explain(in *Input) Explanation {
	ex := Explanation{Decision: e.Decide(in)}
	for _, cp := range e.all {
		t := PolicyTrace{Name: cp.name, Effect: "allow", Mode: "enforce", Active: !cp.inactive}
		if cp.deny {
			t.Effect = "deny"
		}
		if cp.report {
			t.Mode = "report"
		}
		t.Matched, t.Why = cp.explain(in, e.env)
		if t.Matched {
			for _, s := range in.Need {
				if cp.covers(s) {
					t.Covers = append(t.Covers, s)
				}
			}
		}
		ex.Policies = append(ex.Policies, t)
	}
	return ex
}

func (cp *cpol) explain(in *Input, env string) (bool, string) {
	if cp.inactive {
		return false, fmt.Sprintf("environments %s do not include %q", strings.Join(cp.environments, " "), env)
	}
	if !cp.servers.match(in.Server) {
		return false, fmt.Sprintf("server %q does not match %s", in.Server, cp.servers.String())
	}
	if !cp.tenants.match(in.Tenant) {
		return false, fmt.Sprintf("tenant %q does not match %s", in.Tenant, cp.tenants.String())
	}
	agentWhy := "agent: any"
	if len(cp.agents) > 0 {
		agentWhy = ""
		for i := range cp.agents {
			if cp.agents[i].match(&in.Agent) {
				agentWhy = "agent matches " + cp.agents[i].src
				break
			}
		}
		if agentWhy == "" {
			srcs := make([]string, len(cp.agents))
			for i := range cp.agents {
				srcs[i] = cp.agents[i].src
			}
			return false, "agent matches none of " + strings.Join(srcs, " ")
		}
	}
	if len(cp.ips) > 0 {
		if !in.ClientIP.IsValid() {
			if !cp.deny {
				return false, "client IP unknown (an allow with ip never matches an unknown IP)"
			}
			agentWhy += "; client IP unknown (a deny with ip applies to an unknown IP)"
		} else if !cp.matchIP(in.ClientIP) {
			return false, fmt.Sprintf("client IP %s not in %s", in.ClientIP, strings.Join(cp.ipSrc, " "))
		} else {
			agentWhy += fmt.Sprintf("; client IP %s in range", in.ClientIP)
		}
	}
	return true, agentWhy
}
