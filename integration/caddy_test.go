package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddymcp/gateway/internal/oidctest"
)

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startProvider starts a real OAuth authorization server on loopback and
// closes it when the test ends (closing it earlier is allowed).
func startProvider(t testing.TB, opts ...oidctest.Option) *oidctest.Provider {
	t.Helper()
	op, err := oidctest.Start("127.0.0.1:0", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = op.Close() })
	return op
}

// syncBuffer is a bytes.Buffer safe for a process writing while a test
// reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// caddyProc is a running gateway binary.
type caddyProc struct {
	t         testing.TB
	Dir       string // its temp directory (Caddyfile, storage, HOME)
	Caddyfile string // the path of the Caddyfile it runs
	AdminAddr string // host:port of the admin API
	Output    *syncBuffer
	cmd       *exec.Cmd
	exited    chan struct{}
	exitErr   error
}

// openPolicy lets every agent, anonymous ones included, use every server
// (with no policy, the gateway denies everything). Goes inside `mcp { }`.
const openPolicy = `	policy open {
		allow
		agents *
	}
`

// caddyConfig is what a test puts into a Caddyfile; startCaddy adds the
// global options that keep it on loopback and inside the test's temp dir.
type caddyConfig struct {
	// Global is inserted into the global options block (e.g. an `mcp { }`).
	Global string
	// Sites are the site blocks. Use http:// addresses on ports from
	// freePort; every site binds to 127.0.0.1 only.
	Sites string
	// WaitPorts are the site ports to wait for before returning.
	WaitPorts []int
}

// startCaddy writes the Caddyfile to a temp directory, runs `caddy run` on
// it, waits until the admin API and the given site ports answer, and stops
// the process (SIGINT, then kill) when the test ends. Its stdout and stderr
// go to c.Output, which is dumped into the test log when the test failed.
func startCaddy(t testing.TB, cfg caddyConfig) *caddyProc {
	t.Helper()
	bin := needCaddy(t)
	dir := t.TempDir()
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	caddyfile := fmt.Sprintf(`{
	admin %s
	auto_https off
	persist_config off
	grace_period 2s
	default_bind 127.0.0.1
	storage file_system %s
	%s
}

%s
`, admin, filepath.Join(dir, "storage"), indent(cfg.Global, "\t"), cfg.Sites)
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}

	c := &caddyProc{t: t, Dir: dir, Caddyfile: path, AdminAddr: admin, Output: new(syncBuffer), exited: make(chan struct{})}
	c.cmd = exec.Command(bin, "run", "--config", path, "--adapter", "caddyfile")
	c.cmd.Dir = dir
	c.cmd.Stdout = c.Output
	c.cmd.Stderr = c.Output
	c.cmd.Env = append(os.Environ(),
		"HOME="+dir,
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
	)
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting caddy: %v", err)
	}
	go func() {
		c.exitErr = c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			t.Logf("Caddyfile:\n%s\ncaddy output:\n%s", numbered(caddyfile), c.Output.String())
		}
	})

	if err := c.waitReady(cfg.WaitPorts, 30*time.Second); err != nil {
		t.Fatalf("caddy did not become ready: %v", err)
	}
	return c
}

// waitReady polls the admin API and the site ports.
func (c *caddyProc) waitReady(ports []int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	ready := func() bool {
		resp, err := client.Get("http://" + c.AdminAddr + "/config/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false
		}
		for _, p := range ports {
			conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second)
			if err != nil {
				return false
			}
			conn.Close()
		}
		return true
	}
	for {
		select {
		case <-c.exited:
			return fmt.Errorf("caddy exited: %v", c.exitErr)
		default:
		}
		if ready() {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the process: SIGINT for a graceful stop, kill after 10s.
func (c *caddyProc) stop() {
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

// waitLog waits until the process output contains s.
func (c *caddyProc) waitLog(ctx context.Context, s string) bool {
	for {
		if strings.Contains(c.Output.String(), s) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := 1; i < len(lines); i++ {
		lines[i] = prefix + lines[i]
	}
	return strings.Join(lines, "\n")
}

func numbered(s string) string {
	var b strings.Builder
	for i, l := range strings.Split(s, "\n") {
		fmt.Fprintf(&b, "%3d  %s\n", i+1, l)
	}
	return b.String()
}
