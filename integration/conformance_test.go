package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestConformance2025: the stable conformance suite (0.1.16, revision
// 2025-11-25) against the session-keeping everything-server passes through
// the gateway every check it passes directly.
func TestConformance2025(t *testing.T) {
	t.Parallel()
	testConformance(t, conformanceRun{
		suite:     toolConfStable,
		stateless: false,
		args:      []string{"--spec-version", "2025-11-25"},
	})
}

// TestConformance2026: the next conformance suite (0.2.0-alpha.12, revision
// 2026-07-28, all scenarios) against the stateless everything-server passes
// through the gateway every check it passes directly.
func TestConformance2026(t *testing.T) {
	t.Parallel()
	testConformance(t, conformanceRun{
		suite:     toolConfNext,
		stateless: true,
		args:      []string{"--spec-version", "2026-07-28", "--suite", "all"},
	})
}

type conformanceRun struct {
	suite     string // tool path of the suite's dist/index.js
	stateless bool   // everything-server -stateless
	args      []string
}

func testConformance(t *testing.T, cr conformanceRun) {
	nodeBin := needTool(t, toolNodeBin)
	node := needTool(t, filepath.Join(toolNodeBin, "node"))
	suite := needTool(t, cr.suite)
	es := needTool(t, toolEverythingServer)
	_ = nodeBin

	esAddr := startEverythingServer(t, es, cr.stateless)
	direct := runConformance(t, node, suite, "http://"+esAddr+"/", cr.args)

	port := freePort(t)
	startCaddy(t, caddyConfig{
		Global: "mcp {\n\ttenant conformance {\n\t}\n" + openPolicy + "}",
		Sites: fmt.Sprintf(`http://:%d {
	mcp_gateway {
		server everything {
			tenant conformance
			path /mcp
			upstream http://%s/
			anonymous
		}
	}
}
`, port, esAddr),
		WaitPorts: []int{port},
	})
	gateway := runConformance(t, node, suite, fmt.Sprintf("http://127.0.0.1:%d/mcp", port), cr.args)

	t.Logf("conformance %s %s: directly %d passed, %d failed; through the gateway %d passed, %d failed",
		filepath.Base(filepath.Dir(filepath.Dir(suite))), strings.Join(cr.args, " "),
		direct.passed, direct.failed, gateway.passed, gateway.failed)

	if direct.passed == 0 {
		t.Fatalf("the suite passed nothing directly against the everything-server:\n%s", direct.output)
	}
	var lost []string
	for key, status := range direct.checks {
		if status != "SUCCESS" {
			continue
		}
		if got := gateway.checks[key]; got != "SUCCESS" {
			if got == "" {
				got = "missing"
			}
			lost = append(lost, fmt.Sprintf("%s: %s%s", key, got, gateway.details[key]))
		}
	}
	sort.Strings(lost)
	if len(lost) > 0 {
		t.Errorf("%d checks pass directly but not through the gateway:\n  %s", len(lost), strings.Join(lost, "\n  "))
	}
	if gateway.passed < direct.passed {
		t.Errorf("through the gateway %d passed, directly %d", gateway.passed, direct.passed)
	}
	if t.Failed() {
		t.Logf("suite output through the gateway:\n%s", gateway.output)
	}
}

// startEverythingServer runs the go-sdk conformance server on a free
// loopback port and returns its address.
func startEverythingServer(t *testing.T, bin string, stateless bool) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	out := new(syncBuffer)
	cmd := exec.Command(bin, "-http="+addr, "-stateless="+strconv.FormatBool(stateless))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting everything-server: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("everything-server output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return addr
		}
		select {
		case <-exited:
			t.Fatalf("everything-server exited:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("everything-server did not listen on %s:\n%s", addr, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// conformanceResult is one run of a suite.
type conformanceResult struct {
	passed, failed int               // checks, as the suite's summary counts them
	checks         map[string]string // "scenario/check-id#n" -> status
	details        map[string]string // same key -> error message, if any
	output         string
}

var (
	totalRe        = regexp.MustCompile(`(?m)^Total: (\d+) passed, (\d+) failed`)
	resultDirTsRe  = regexp.MustCompile(`-\d{4}-\d{2}-\d{2}T[0-9-]+Z$`)
	conformanceMax = 8 * time.Minute
)

// runConformance runs `conformance server --url URL args...` with Node 22
// and reads the per-check results it saves with --output-dir.
func runConformance(t *testing.T, node, suite, url string, args []string) conformanceResult {
	t.Helper()
	outDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), conformanceMax)
	defer cancel()
	cmdArgs := append([]string{suite, "server", "--url", url, "--output-dir", outDir}, args...)
	cmd := exec.CommandContext(ctx, node, cmdArgs...)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(node)+string(os.PathListSeparator)+os.Getenv("PATH"), "NO_COLOR=1", "CI=true")
	cmd.Dir = outDir
	start := time.Now()
	out, err := cmd.CombinedOutput()
	res := conformanceResult{checks: map[string]string{}, details: map[string]string{}, output: string(out)}
	if ctx.Err() != nil {
		t.Fatalf("conformance against %s timed out after %s:\n%s", url, conformanceMax, out)
	}
	// A non-zero exit means failed checks; the results say which.
	t.Logf("conformance against %s took %s (exit: %v)", url, time.Since(start).Round(time.Millisecond), err)

	entries, rerr := os.ReadDir(outDir)
	if rerr != nil {
		t.Fatal(rerr)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		scenario := resultDirTsRe.ReplaceAllString(strings.TrimPrefix(e.Name(), "server-"), "")
		raw, rerr := os.ReadFile(filepath.Join(outDir, e.Name(), "checks.json"))
		if rerr != nil {
			res.checks[scenario+"/checks.json"] = "MISSING"
			continue
		}
		var checks []struct {
			ID           string `json:"id"`
			Status       string `json:"status"`
			ErrorMessage string `json:"errorMessage"`
		}
		if jerr := json.Unmarshal(raw, &checks); jerr != nil {
			t.Fatalf("%s: %v", e.Name(), jerr)
		}
		seen := map[string]int{}
		for _, c := range checks {
			seen[c.ID]++
			key := fmt.Sprintf("%s/%s#%d", scenario, c.ID, seen[c.ID])
			res.checks[key] = c.Status
			if c.ErrorMessage != "" {
				res.details[key] = " (" + c.ErrorMessage + ")"
			}
			switch c.Status {
			case "SUCCESS":
				res.passed++
			case "FAILURE":
				res.failed++
			}
		}
	}
	// Cross-check with the suite's own summary line.
	if m := totalRe.FindStringSubmatch(string(out)); m != nil {
		p, _ := strconv.Atoi(m[1])
		f, _ := strconv.Atoi(m[2])
		if p != res.passed || f != res.failed {
			t.Errorf("against %s: the suite's summary says %d passed, %d failed; its result files %d and %d", url, p, f, res.passed, res.failed)
		}
	} else {
		t.Errorf("against %s: no summary line in the suite's output (exit %v):\n%s", url, err, out)
	}
	return res
}
