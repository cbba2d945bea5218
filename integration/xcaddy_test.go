package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// modulePath is this repository's Go module.
const modulePath = "github.com/caddymcp/gateway"

// TestXcaddyBuild builds Caddy the way users do, with xcaddy and this
// checkout as the module (pseudo-version + local replacement, since the
// module is not published), and checks the modules are in the binary.
func TestXcaddyBuild(t *testing.T) {
	t.Parallel()
	xcaddy := needTool(t, toolXcaddy)
	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/caddyserver/caddy/v2 (v\S+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod does not require github.com/caddyserver/caddy/v2")
	}
	caddyVersion := string(m[1])

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "caddy")
	cmd := exec.CommandContext(ctx, xcaddy, "build", caddyVersion,
		"--with", modulePath+"@v0.0.0-00010101000000-000000000000="+repoRoot,
		"--output", out)
	cmd.Dir = t.TempDir()
	// Without -trimpath (xcaddy's default flags) the compiled packages are
	// the ones `go build ./cmd/caddy` left in the build cache: the build
	// takes seconds instead of minutes on a 2-core machine. What is tested
	// (module resolution, the plugin import, the modules registered) is
	// the same.
	cmd.Env = append(os.Environ(), "XCADDY_GO_BUILD_FLAGS=-ldflags=-w")
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("xcaddy build %s --with %s=%s: %v\n%s", caddyVersion, modulePath, repoRoot, err, b)
	}
	t.Logf("xcaddy build took %s", time.Since(start).Round(time.Second))

	b, err := exec.CommandContext(ctx, out, "list-modules").CombinedOutput()
	if err != nil {
		t.Fatalf("caddy list-modules: %v\n%s", err, b)
	}
	mods := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		mods[strings.TrimSpace(l)] = true
	}
	for _, want := range []string{"mcp", "http.handlers.mcp_gateway"} {
		if !mods[want] {
			t.Errorf("caddy list-modules lacks %q:\n%s", want, b)
		}
	}
	if b, err := exec.CommandContext(ctx, out, "version").CombinedOutput(); err != nil || !strings.HasPrefix(string(b), caddyVersion) {
		t.Errorf("caddy version = %q (%v), want %s", b, err, caddyVersion)
	}
}
