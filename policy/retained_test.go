package policy

import (
	"fmt"
	"runtime"
	"testing"
)

// bigShapePolicies builds n policies shaped like bench/genbig.sh's: each
// names one client, one of 100 groups, one of n/10 servers and its tenant
// (one of n/100), and the same two scopes.
func bigShapePolicies(n int) []Policy {
	ps := make([]Policy, n)
	for i := range ps {
		srv := i % max(n/10, 1)
		ps[i] = Policy{
			Name:    fmt.Sprintf("p%d", i),
			Effect:  "allow",
			Agents:  []string{fmt.Sprintf("client:agent-%d", i), fmt.Sprintf("group:g%d", i%100)},
			Servers: []string{fmt.Sprintf("s%d", srv)},
			Tenants: []string{fmt.Sprintf("t%d", srv%max(n/100, 1))},
			Scopes:  []string{"mcp:read", "mcp:write"},
		}
	}
	return ps
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkCompileRetained reports the heap an engine keeps per policy once
// the configuration that produced it is gone (the gateway drops its decoded
// policies after start): at 100 000 policies every retained word is heap
// the GC walks on each cycle.
func BenchmarkCompileRetained(b *testing.B) {
	const n = 100_000
	var e *Engine
	for b.Loop() {
		e = nil
		before := liveHeap()
		ps := bigShapePolicies(n)
		var err error
		if e, err = Compile(ps, "", Options{}); err != nil {
			b.Fatal(err)
		}
		ps = nil
		after := liveHeap()
		b.ReportMetric(float64(after-before)/n, "retained-B/policy")
	}
	runtime.KeepAlive(e)
}

// TestCompileSharesIdenticalLists: policies naming the same servers,
// tenants or scopes share one compiled list, and sharing changes no
// decision (each policy still matches only its own server).
func TestCompileSharesIdenticalLists(t *testing.T) {
	e, err := Compile(bigShapePolicies(1000), "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	p0, p1, p100 := e.all[0], e.all[1], e.all[100] // p0 and p100: server s0; p1: s1
	if &p0.scopes[0] != &p1.scopes[0] {
		t.Error("the same two scopes compiled twice")
	}
	if &p0.servers[0] != &p100.servers[0] || &p0.tenants[0] != &p100.tenants[0] {
		t.Error("the same server or tenant list compiled twice")
	}
	if &p0.servers[0] == &p1.servers[0] {
		t.Error("different server lists share one compiled list")
	}
	in := &Input{Agent: Agent{ClientID: "agent-1"}, Server: "s1", Tenant: "t1", TokenScopes: []string{"mcp:read"}, Need: []string{"mcp:read"}}
	if d := e.Decide(in); !d.Allowed || d.Policy != "p1" {
		t.Fatalf("agent-1 on s1: %+v", d)
	}
	in.Server = "s0"
	if d := e.Decide(in); d.Allowed {
		t.Fatalf("agent-1 on s0 (p1 names s1 only): %+v", d)
	}
}
