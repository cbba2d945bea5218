package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddymcp/gateway/internal/oidctest"
)

// scrape returns the value of every sample of the Prometheus text format
// whose series (name and labels, as printed) matches re, summed.
func scrape(t *testing.T, adminAddr string, re *regexp.Regexp) float64 {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || !re.MatchString(line[:i]) {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// TestMetricsAdminAndReload: after a scripted run through the real binary,
// Caddy's metrics endpoint shows the gateway's counters with bounded
// labels, the admin API lists servers without secrets and explains a
// decision, and after `caddy reload` with a changed policy the counters are
// kept and the next call follows the new policy.
func TestMetricsAdminAndReload(t *testing.T) {
	const apiKey = "ops-test-api-key-7f3e"
	op := startProvider(t, oidctest.WithClients(
		oidctest.Client{ID: "partner-bot", Secret: agentSecret, GrantTypes: []string{oidctest.GrantClientCredentials},
			Scopes: []string{"mcp:read", "mcp:write"}, Groups: []string{"partners"}, Subject: "partner-user"},
	))
	up := newUpstream(t, "ops")
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	global := func(extra string) string {
		return fmt.Sprintf(`mcp {
	issuer %s
	tenant acme {
		connection billing {
			api_key X-Api-Key %s
		}
	}
	policy partners {
		allow
		agents group:partners
		scopes mcp:read
	}
	%s
}`, op.Issuer(), apiKey, extra)
	}
	sites := fmt.Sprintf(`%s {
	mcp_gateway {
		server acme-ops {
			tenant acme
			path /ops/mcp
			upstream %s
			connection billing
			require mcp:read
			tool countdown mcp:write
			tool * mcp:read
		}
	}
}`, base, up.URL)
	c := startCaddy(t, caddyConfig{Global: global(""), Sites: sites, WaitPorts: []int{port}})
	ctx, cancel := testContext(t, 90)
	defer cancel()
	endpoint := base + "/ops/mcp"
	tok, err := op.AgentToken(ctx, "partner-bot", endpoint, "mcp:read", "mcp:write")
	if err != nil {
		t.Fatal(err)
	}
	hc := http.DefaultClient
	// The scripted run: 3 allowed calls, 2 denied, 1 without a token.
	for i := 0; i < 3; i++ {
		if st, body, _ := statelessCall(ctx, hc, endpoint, tok, "whoami", nil); st != 200 || !strings.Contains(body, "upstream=ops") {
			t.Fatalf("allowed call: %d %s", st, body)
		}
	}
	for i := 0; i < 2; i++ {
		if st, body, _ := statelessCall(ctx, hc, endpoint, tok, "countdown", nil); st != 200 || !strings.Contains(body, "Unknown tool: countdown") {
			t.Fatalf("denied call: %d %s", st, body)
		}
	}
	if st, _, _ := statelessCall(ctx, hc, endpoint, "", "whoami", nil); st != 401 {
		t.Fatalf("no token: %d", st)
	}

	series := func(s string) *regexp.Regexp { return regexp.MustCompile(s) }
	allow := series(`^caddy_mcp_decisions_total\{.*decision="allow".*server="acme-ops".*\}$`)
	deny := series(`^caddy_mcp_decisions_total\{.*decision="deny".*server="acme-ops".*\}$`)
	if got := scrape(t, c.AdminAddr, allow); got != 3 {
		t.Errorf("allow decisions = %v, want 3", got)
	}
	if got := scrape(t, c.AdminAddr, deny); got != 2 {
		t.Errorf("deny decisions = %v, want 2", got)
	}
	if got := scrape(t, c.AdminAddr, series(`^caddy_mcp_token_validations_total\{result="missing"\}$`)); got != 1 {
		t.Errorf("missing-token validations = %v, want 1", got)
	}
	if got := scrape(t, c.AdminAddr, series(`^caddy_mcp_upstream_request_duration_seconds_count\{server="acme-ops"\}$`)); got != 3 {
		t.Errorf("upstream latency observations = %v, want 3", got)
	}
	if got := scrape(t, c.AdminAddr, series(`^caddy_mcp_token_cache_hits_total$`)); got < 4 {
		t.Errorf("token cache hits = %v, want >= 4", got)
	}
	// No token, subject or secret ever becomes a label.
	resp, err := http.Get("http://" + c.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	all, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, s := range []string{tok, apiKey, "partner-user", "partner-bot"} {
		if strings.Contains(string(all), s) {
			t.Errorf("metrics expose %.16s...", s)
		}
	}

	// Admin API: servers without secrets; the explainer.
	resp, err = http.Get("http://" + c.AdminAddr + "/mcp/servers")
	if err != nil {
		t.Fatal(err)
	}
	servers, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(servers), "acme-ops") || strings.Contains(string(servers), apiKey) {
		t.Fatalf("/mcp/servers: %d %s", resp.StatusCode, servers)
	}
	explain := func() map[string]any {
		body := `{"server":"acme-ops","method":"tools/call","tool":"countdown","client_id":"partner-bot","sub":"partner-user","groups":["partners"],"scopes":["mcp:read","mcp:write"]}`
		resp, err := http.Post("http://"+c.AdminAddr+"/mcp/explain", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return m
	}
	if m := explain(); m["result"] != "deny" {
		t.Fatalf("explain before reload: %v", m)
	}

	// Reload with a policy granting mcp:write to partners: the counters
	// stay, the next call and the explainer follow the new policy.
	newFile := filepath.Join(c.Dir, "Caddyfile.new")
	old, err := os.ReadFile(c.Caddyfile)
	if err != nil {
		t.Fatal(err)
	}
	updated := strings.Replace(string(old), "scopes mcp:read\n", "scopes mcp:read mcp:write\n", 1)
	if updated == string(old) {
		t.Fatal("could not edit the policy")
	}
	if err := os.WriteFile(newFile, []byte(updated), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(needCaddy(t), "reload", "--config", newFile, "--adapter", "caddyfile", "--address", c.AdminAddr).CombinedOutput()
	if err != nil {
		t.Fatalf("caddy reload: %v\n%s", err, out)
	}
	if st, body, _ := statelessCall(ctx, hc, endpoint, tok, "countdown", nil); st != 200 || strings.Contains(body, "Unknown tool") {
		t.Fatalf("after reload, countdown: %d %s", st, body)
	}
	if got := scrape(t, c.AdminAddr, allow); got != 4 {
		t.Errorf("allow decisions after reload = %v, want 4 (kept across the reload)", got)
	}
	if got := scrape(t, c.AdminAddr, deny); got != 2 {
		t.Errorf("deny decisions after reload = %v, want 2", got)
	}
	if m := explain(); m["result"] != "allow" {
		t.Fatalf("explain after reload: %v", m)
	}
	assertNoSecretsLogged(t, c, tok, apiKey, agentSecret)
}

// TestBufferedAuditLog: the `mcp_buffered` log writer in front of Caddy's
// file writer. Two logs take the same audit stream: one flushing every
// 200ms shows every decision within seconds; one flushing hourly keeps
// them in memory (its file stays empty while the gateway runs, also across
// a `caddy reload`) and writes every one of them when Caddy stops — so
// buffering saves the per-entry write without losing entries on a reload or
// a clean stop.
func TestBufferedAuditLog(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, "audited")
	port := freePort(t)
	dir := t.TempDir()
	fast, slow := filepath.Join(dir, "audit-fast.log"), filepath.Join(dir, "audit-slow.log")
	c := startCaddy(t, caddyConfig{
		Global: fmt.Sprintf(`log audit_fast {
	include mcp.audit
	output mcp_buffered {
		output file %s
		flush_interval 200ms
	}
}
log audit_slow {
	include mcp.audit
	output mcp_buffered {
		output file %s
		size 1MiB
		flush_interval 1h
	}
}
log default {
	exclude mcp.audit
}
mcp {
	tenant acme {
	}
%s}`, fast, slow, openPolicy),
		Sites: fmt.Sprintf(`http://:%d {
	mcp_gateway {
		server acme-audited {
			tenant acme
			path /mcp
			upstream %s
			anonymous
		}
	}
}
`, port, u.URL),
		WaitPorts: []int{port},
	})
	ctx, cancel := testContext(t, 30)
	defer cancel()
	cl := mustConnect(ctx, t, port, fmt.Sprintf("http://127.0.0.1:%d/mcp", port), clientOptions{})
	const calls = 25
	for i := 0; i < calls; i++ {
		if _, err := cl.whoami(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	decisions := func(path string) (n int, lines []string) {
		data, err := os.ReadFile(path)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			if line == "" {
				continue
			}
			var e struct {
				Logger, Msg, Decision, Server string
			}
			if err := json.Unmarshal([]byte(line), &e); err != nil || e.Logger != "mcp.audit" || e.Msg != "decision" {
				t.Fatalf("%s: not an audit entry: %q (%v)", filepath.Base(path), line, err)
			}
			if e.Server == "acme-audited" && e.Decision == "allow" {
				n++
			}
			lines = append(lines, line)
		}
		return n, lines
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if n, _ := decisions(fast); n >= calls {
			break
		}
		if time.Now().After(deadline) {
			n, _ := decisions(fast)
			t.Fatalf("the 200ms log shows %d allowed decisions after 10s, want >= %d", n, calls)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, lines := decisions(slow); len(lines) != 0 {
		t.Fatalf("the hourly log wrote %d entries while running; want them buffered", len(lines))
	}
	if strings.Contains(c.Output.String(), `"logger":"mcp.audit"`) {
		t.Error("audit entries reached the default log despite `exclude mcp.audit`")
	}

	// A reload that keeps the logs as they are: Caddy keeps the open writers,
	// so the buffered entries survive it and new ones join them.
	old, err := os.ReadFile(c.Caddyfile)
	if err != nil {
		t.Fatal(err)
	}
	updated := strings.Replace(string(old), "\t\t\tanonymous\n", "\t\t\tanonymous\n\t\t\tallowed_origins https://app.acme.example\n", 1)
	newFile := filepath.Join(dir, "Caddyfile.reloaded")
	if updated == string(old) {
		t.Fatal("could not edit the server")
	}
	if err := os.WriteFile(newFile, []byte(updated), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(needCaddy(t), "reload", "--config", newFile, "--adapter", "caddyfile", "--address", c.AdminAddr).CombinedOutput(); err != nil {
		t.Fatalf("caddy reload: %v\n%s", err, out)
	}
	const after = 5
	for i := 0; i < after; i++ {
		if _, err := cl.whoami(ctx, nil); err != nil {
			t.Fatalf("after reload: %v", err)
		}
	}
	if _, lines := decisions(slow); len(lines) != 0 {
		t.Fatalf("the hourly log wrote %d entries around the reload; want them still buffered", len(lines))
	}

	c.stop()
	_, fastLines := decisions(fast)
	n, slowLines := decisions(slow)
	if n < calls+after || len(slowLines) != len(fastLines) {
		t.Fatalf("after stop: hourly log has %d entries (%d allowed calls), the 200ms log %d; want the same, >= %d calls",
			len(slowLines), n, len(fastLines), calls+after)
	}
	for i := range slowLines {
		if slowLines[i] != fastLines[i] {
			t.Fatalf("entry %d differs:\n%s\n%s", i, slowLines[i], fastLines[i])
		}
	}
}

// TestPlaceholders: the {mcp.*} placeholders the README lists carry the
// request's server, tenant, agent, subject, method, tool and decision into
// Caddy's own directives — here a `header_up` in the server's
// reverse_proxy, which the upstream sees on the proxied call.
func TestPlaceholders(t *testing.T) {
	t.Parallel()
	op := startProvider(t, oidctest.WithClients(
		oidctest.Client{ID: "ph-agent", Secret: agentSecret, GrantTypes: []string{oidctest.GrantClientCredentials},
			Scopes: []string{"mcp:read"}, Subject: "ph-user"},
	))
	u := newUpstream(t, "placeholders")
	port := freePort(t)
	endpoint := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
	startCaddy(t, caddyConfig{
		Global: fmt.Sprintf("mcp {\n\tissuer %s\n\ttenant acme {\n\t}\n%s}", op.Issuer(), openPolicy),
		Sites: fmt.Sprintf(`http://:%d {
	mcp_gateway {
		server acme-ph {
			tenant acme
			path /mcp
			upstream %s
			require mcp:read
			reverse_proxy {
				header_up X-Gw "{mcp.server}|{mcp.tenant}|{mcp.agent}|{mcp.subject}|{mcp.method}|{mcp.tool}|{mcp.decision}"
			}
		}
	}
}
`, port, u.URL),
		WaitPorts: []int{port},
	})
	ctx, cancel := testContext(t, 30)
	defer cancel()
	tok, err := op.AgentToken(ctx, "ph-agent", endpoint, "mcp:read")
	if err != nil {
		t.Fatal(err)
	}
	cl := mustConnect(ctx, t, port, endpoint, clientOptions{Header: bearer(tok)})
	who, err := cl.whoami(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := http.Header(who.Headers).Get("X-Gw"), "acme-ph|acme|ph-agent|ph-user|tools/call|whoami|allow"; got != want {
		t.Errorf("upstream saw X-Gw %q, want %q", got, want)
	}
}
