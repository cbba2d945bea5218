package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRoutingTwoTenantsPathsAndHosts: two tenants, each with a server on a
// path of one host-less site and a server on its own host, each server to
// its own upstream. The go-sdk client, at its default revision and pinned
// to the session revisions, reaches only its own upstream; unmatched
// requests fall through to the next handler.
func TestRoutingTwoTenantsPathsAndHosts(t *testing.T) {
	t.Parallel()
	ups := map[string]*upstream{}
	for _, name := range []string{"acme-path", "globex-path", "acme-host", "globex-host"} {
		ups[name] = newUpstream(t, name)
	}
	port := freePort(t)
	startCaddy(t, caddyConfig{
		Global: `mcp {
	tenant acme {
	}
	tenant globex {
	}
` + openPolicy + `}`,
		Sites: fmt.Sprintf(`http://:%d {
	route {
		mcp_gateway {
			server acme-path {
				tenant acme
				path /acme/mcp
				upstream %s
				anonymous
			}
			server globex-path {
				tenant globex
				path /globex/mcp
				upstream %s
				anonymous
			}
			server acme-host {
				tenant acme
				host acme.test
				path /mcp
				upstream %s
				anonymous
			}
			server globex-host {
				tenant globex
				host globex.test
				path /mcp
				upstream %s
				anonymous
			}
		}
		respond "fallthrough" 200
	}
}
`, port, ups["acme-path"].URL, ups["globex-path"].URL, ups["acme-host"].URL, ups["globex-host"].URL),
		WaitPorts: []int{port},
	})

	endpoints := map[string]string{
		"acme-path":   fmt.Sprintf("http://127.0.0.1:%d/acme/mcp", port),
		"globex-path": fmt.Sprintf("http://127.0.0.1:%d/globex/mcp", port),
		"acme-host":   "http://acme.test/mcp",
		"globex-host": "http://globex.test/mcp",
	}
	revisions := []string{"", rev20251125, rev20250618, rev20250326}

	for _, rev := range revisions {
		for name, endpoint := range endpoints {
			t.Run(revisionName(rev)+"/"+name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				clientID := fmt.Sprintf("%s@%s", name, revisionName(rev))
				cl := mustConnect(ctx, t, port, endpoint, clientOptions{
					Revision: rev,
					Header:   http.Header{"X-Test-Client": {clientID}},
				})
				names, err := cl.toolNames(ctx)
				if err != nil {
					t.Fatalf("tools/list: %v", err)
				}
				for _, want := range []string{"whoami", "countdown", "sleep"} {
					if !slices.Contains(names, want) {
						t.Errorf("tools/list = %v, lacks %q", names, want)
					}
				}
				who, err := cl.whoami(ctx, nil)
				if err != nil {
					t.Fatalf("tools/call whoami: %v", err)
				}
				if who.Upstream != name {
					t.Errorf("whoami through %s answered by upstream %q, want %q", endpoint, who.Upstream, name)
				}
				_ = cl.Close()

				// Every request of this client reached its own upstream and
				// no other.
				own := ups[name].RequestsWith("X-Test-Client", clientID)
				if len(own) == 0 {
					t.Errorf("upstream %s recorded no request from %s:\n%s", name, clientID, ups[name].Summary())
				}
				for other, u := range ups {
					if other == name {
						continue
					}
					if got := u.RequestsWith("X-Test-Client", clientID); len(got) > 0 {
						t.Errorf("upstream %s received %d requests meant for %s", other, len(got), name)
					}
				}
				// The upstream sees its own host, not the public one, at its
				// own path.
				for _, r := range own {
					if want := strings.TrimPrefix(strings.TrimSuffix(ups[name].URL, upstreamPath), "http://"); r.Host != want {
						t.Errorf("upstream %s got Host %q, want its own %q", name, r.Host, want)
						break
					}
					if r.Path != upstreamPath {
						t.Errorf("upstream %s got path %q, want %q", name, r.Path, upstreamPath)
						break
					}
				}
				// The revision the client spoke is the one the upstream saw.
				wantRev := rev
				if wantRev == "" {
					wantRev = defaultRevision
				}
				sawRev := false
				for _, r := range own {
					if v := r.Header.Get("Mcp-Protocol-Version"); v != "" {
						sawRev = true
						if v != wantRev {
							t.Errorf("upstream %s got MCP-Protocol-Version %q, want %q", name, v, wantRev)
							break
						}
					}
				}
				if !sawRev {
					t.Errorf("upstream %s never received MCP-Protocol-Version from %s:\n%s", name, clientID, ups[name].Summary())
				}
			})
		}
	}

	t.Run("fallthrough", func(t *testing.T) {
		hc := newLoopbackClient(port, nil)
		check := func(method, url, body string) {
			t.Helper()
			req, _ := http.NewRequest(method, url, strings.NewReader(body))
			if body != "" {
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json, text/event-stream")
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", method, url, err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(b) != "fallthrough" {
				t.Errorf("%s %s = %d %q, want 200 \"fallthrough\" from the next handler", method, url, resp.StatusCode, b)
			}
		}
		before := 0
		for _, u := range ups {
			before += len(u.Requests())
		}
		ping := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
		check("GET", fmt.Sprintf("http://127.0.0.1:%d/nope", port), "")
		check("POST", fmt.Sprintf("http://127.0.0.1:%d/acme/mcp/extra", port), ping)
		check("POST", fmt.Sprintf("http://127.0.0.1:%d/acme", port), ping)
		check("POST", fmt.Sprintf("http://127.0.0.1:%d/mcp", port), ping) // /mcp exists only on acme.test and globex.test
		check("POST", "http://other.test/mcp", ping)
		check("POST", "http://acme.test/globex", ping)
		after := 0
		for _, u := range ups {
			after += len(u.Requests())
		}
		if after != before {
			t.Errorf("unmatched requests reached an upstream (%d requests before, %d after)", before, after)
		}
	})
}
