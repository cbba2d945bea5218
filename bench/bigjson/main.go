// Command bigjson expands a small adapted gateway config into a large one.
//
// `caddy adapt` of a Caddyfile with 10 000 servers and 100 000 policies takes minutes here (see
// BENCHMARKS.md), too long for every benchmark run. So the benchmark adapts a small Caddyfile
// made by genbig.sh (servers s0.., tenants t0.., policies p0..) with the real adapter, and this
// program clones the adapter's own output for s0, t0 and p0 into N servers, N/10 tenants and M
// policies, renaming them exactly as genbig.sh does. Everything else (the bench tenant, server
// and policy, issuers, the site) is kept as adapted.
//
// Usage: bigjson -in small.json -servers 10000 -policies 100000 > big.json
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
)

type obj = map[string]any

func clone(v any) any {
	b, _ := json.Marshal(v)
	var out any
	json.Unmarshal(b, &out)
	return out
}

func main() {
	in := flag.String("in", "", "adapted JSON of a genbig.sh Caddyfile (at least s0, t0, p0)")
	nServers := flag.Int("servers", 10000, "servers")
	nPolicies := flag.Int("policies", 100000, "policies")
	flag.Parse()
	raw, err := os.ReadFile(*in)
	if err != nil {
		log.Fatal(err)
	}
	var cfg obj
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&cfg); err != nil {
		log.Fatal(err)
	}
	nTenants := *nServers / 10
	if nTenants < 1 {
		nTenants = 1
	}
	apps := cfg["apps"].(obj)
	mcp := apps["mcp"].(obj)

	// Tenants: keep the non-generated ones, then t0..t(n-1) cloned from t0.
	var tTmpl any
	var tenants []any
	for _, t := range mcp["tenants"].([]any) {
		name := t.(obj)["name"].(string)
		if name == "t0" {
			tTmpl = t
		}
		if len(name) > 1 && name[0] == 't' && isDigits(name[1:]) {
			continue
		}
		tenants = append(tenants, t)
	}
	if tTmpl == nil {
		log.Fatal("bigjson: no tenant t0 in input")
	}
	for i := 0; i < nTenants; i++ {
		t := clone(tTmpl).(obj)
		t["name"] = fmt.Sprintf("t%d", i)
		tenants = append(tenants, t)
	}
	mcp["tenants"] = tenants

	// Policies: p0..p(m-1) cloned from p0, then the others (bench last), as genbig.sh orders them.
	var pTmpl any
	var rest []any
	for _, p := range mcp["policies"].([]any) {
		name := p.(obj)["name"].(string)
		if name == "p0" {
			pTmpl = p
		}
		if len(name) > 1 && name[0] == 'p' && isDigits(name[1:]) {
			continue
		}
		rest = append(rest, p)
	}
	if pTmpl == nil {
		log.Fatal("bigjson: no policy p0 in input")
	}
	policies := make([]any, 0, *nPolicies+len(rest))
	for i := 0; i < *nPolicies; i++ {
		p := clone(pTmpl).(obj)
		srv := i % *nServers
		p["name"] = fmt.Sprintf("p%d", i)
		p["agents"] = []any{fmt.Sprintf("client:agent-%d", i), fmt.Sprintf("group:g%d", i%100)}
		p["servers"] = []any{fmt.Sprintf("s%d", srv)}
		p["tenants"] = []any{fmt.Sprintf("t%d", srv%nTenants)}
		policies = append(policies, p)
	}
	mcp["policies"] = append(policies, rest...)

	// Servers: find the mcp_gateway handler wherever the adapter put it.
	gw := findGateway(apps["http"])
	if gw == nil {
		log.Fatal("bigjson: no mcp_gateway handler in input")
	}
	var sTmpl any
	var others []any
	for _, s := range gw["servers"].([]any) {
		name := s.(obj)["name"].(string)
		if name == "s0" {
			sTmpl = s
		}
		if len(name) > 1 && name[0] == 's' && isDigits(name[1:]) {
			continue
		}
		others = append(others, s)
	}
	if sTmpl == nil {
		log.Fatal("bigjson: no server s0 in input")
	}
	servers := make([]any, 0, *nServers+len(others))
	for i := 0; i < *nServers; i++ {
		s := clone(sTmpl).(obj)
		s["name"] = fmt.Sprintf("s%d", i)
		s["tenant"] = fmt.Sprintf("t%d", i%nTenants)
		s["path"] = fmt.Sprintf("/t%d/s%d/mcp", i%nTenants, i)
		servers = append(servers, s)
	}
	gw["servers"] = append(servers, others...)

	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(cfg); err != nil {
		log.Fatal(err)
	}
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// findGateway walks the config for the object with "handler": "mcp_gateway".
func findGateway(v any) obj {
	switch x := v.(type) {
	case obj:
		if x["handler"] == "mcp_gateway" {
			return x
		}
		for _, c := range x {
			if g := findGateway(c); g != nil {
				return g
			}
		}
	case []any:
		for _, c := range x {
			if g := findGateway(c); g != nil {
				return g
			}
		}
	}
	return nil
}
