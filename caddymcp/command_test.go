package caddymcp

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/pflag"
)

func explainFlagSet(t *testing.T, args ...string) caddycmd.Flags {
	t.Helper()
	fs := pflag.NewFlagSet("mcp-explain", pflag.ContinueOnError)
	explainFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return caddycmd.Flags{FlagSet: fs}
}

func TestExplainFlags(t *testing.T) {
	fl := explainFlagSet(t, "--server", "acme-notion", "--tool", "update_page", "--client-id", "cursor",
		"--sub", "u1", "--group", "partners", "--group", "staff",
		"--claim", "tenant=acme", "--claim", `roles=["admin","dev"]`, "--claim", "level=3", "--claim", "note=a=b",
		"--scope", "mcp:read mcp:write", "--scope", "x", "--ip", "10.0.0.1")
	req, err := explainRequestFromFlags(fl)
	if err != nil {
		t.Fatal(err)
	}
	want := &ExplainRequest{
		Server: "acme-notion", Tool: "update_page", ClientID: "cursor", Sub: "u1",
		Groups: []string{"partners", "staff"},
		Claims: map[string]any{"tenant": "acme", "roles": []any{"admin", "dev"}, "level": float64(3), "note": "a=b"},
		Scopes: []string{"mcp:read", "mcp:write", "x"}, IP: "10.0.0.1",
	}
	if !reflect.DeepEqual(req, want) {
		t.Errorf("got  %+v\nwant %+v", req, want)
	}

	req, err = explainRequestFromFlags(explainFlagSet(t, "--server", "s"))
	if err != nil || req.Scopes != nil || req.Claims != nil {
		t.Errorf("defaults: %+v %v", req, err)
	}
	req, err = explainRequestFromFlags(explainFlagSet(t, "--server", "s", "--no-scopes"))
	if err != nil || req.Scopes == nil || len(req.Scopes) != 0 {
		t.Errorf("--no-scopes: %+v %v", req, err)
	}

	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--tool", "x"}, "--server is required"},
		{[]string{"--server", "s", "--claim", "novalue"}, "want NAME=VALUE"},
		{[]string{"--server", "s", "--claim", "=v"}, "want NAME=VALUE"},
		{[]string{"--server", "s", "--scope", "a", "--no-scopes"}, "exclude each other"},
	} {
		if _, err := explainRequestFromFlags(explainFlagSet(t, c.args...)); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%v: %v, want %q", c.args, err, c.msg)
		}
	}
}

// The command evaluates the example Caddyfile locally.
func TestExplainCommandWithConfig(t *testing.T) {
	run := func(args ...string) (int, string, error) {
		var out bytes.Buffer
		code, err := cmdMCPExplain(explainFlagSet(t, append([]string{"--config", "../Caddyfile.example", "--adapter", "caddyfile"}, args...)...), &out)
		return code, out.String(), err
	}
	code, out, err := run("--server", "acme-notion", "--tool", "update_page", "--group", "partners", "--scope", "mcp:read mcp:write")
	if err != nil {
		t.Fatal(err)
	}
	if code != explainExitDeny {
		t.Errorf("exit %d, want %d", code, explainExitDeny)
	}
	for _, s := range []string{"decision:  deny", `reason:    no policy grants scope "mcp:write"`, "needs:     mcp:read mcp:write",
		"POLICY", "partners", "agent matches group:partners"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}

	code, out, err = run("--server", "acme-notion", "--tool", "search", "--group", "partners", "--scope", "mcp:read", "--ip", "203.0.113.7")
	if err != nil || code != explainExitAllow || !strings.Contains(out, "policy:    partners") {
		t.Errorf("allow: exit %d %v\n%s", code, err, out)
	}

	code, out, err = run("--server", "acme-tools", "--tool", "deploy", "--client-id", "cursor-acme", "--scope", "mcp:read")
	if err != nil || code != explainExitDeny || !strings.Contains(out, "decision:  step_up") || !strings.Contains(out, "missing:   mcp:write") {
		t.Errorf("step-up: exit %d %v\n%s", code, err, out)
	}

	code, out, err = run("--server", "acme-tools", "--tool", "deploy", "--client-id", "cursor-acme", "--ip", "127.0.0.1", "--json")
	if err != nil || code != explainExitAllow || !strings.Contains(out, `"result": "would_deny"`) || !strings.Contains(out, `"would_policy": "lockdown-writes"`) {
		t.Errorf("report mode: exit %d %v\n%s", code, err, out)
	}

	if code, _, err := run("--server", "nope"); err == nil || code != explainExitError {
		t.Errorf("unknown server: exit %d %v", code, err)
	}
}
