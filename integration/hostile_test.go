package integration

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddymcp/gateway/internal/oidctest"
)

// The hostile-input flood: a seeded PRNG builds requests that are each
// refused for a known reason (bad or missing token, malformed or smuggling
// body, header mismatch, denied tool, unknown session, odd method or path,
// broken HTTP framing), mixed with a few legitimate control calls; 16
// workers send them over raw TCP to the real binary in front of a
// recording upstream.

// hostileCase is one request of the flood.
type hostileCase struct {
	kind    string // for the failure report and the summary
	head    []byte // request line and header fields, up to the empty line
	body    []byte // shared for the huge bodies
	extra   []byte // bytes after the body (a smuggled request)
	allowed map[int]bool
	control bool // a legitimate call: 200 and forwarded, with id "ctl-N"
	deny    bool // a 200 must be a JSON-RPC policy error
	fresh   bool // on a connection of its own, reading every response
	method  string
}

func statuses(s ...int) map[int]bool {
	m := make(map[int]bool, len(s))
	for _, v := range s {
		m[v] = true
	}
	return m
}

// hostileEnv is what the generator needs to know about the gateway.
type hostileEnv struct {
	host     string // 127.0.0.1:PORT
	path     string // the MCP endpoint's path
	good     string // a valid token: mcp:read mcp:danger
	badToks  []string
	huge     []byte // a body over the 4 MiB limit
	bigToken string
}

func callJSON(id, tool, rev string) string {
	meta := ""
	if rev == defaultRevision {
		meta = `,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"hostile","version":"1"}}`
	}
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%q,"method":"tools/call","params":{"name":%q,"arguments":{}%s}}`, id, tool, meta)
}

// reqBuilder assembles a raw HTTP/1.1 request.
type reqBuilder struct {
	method, target string
	hdr            [][2]string
	body           []byte
	noLength       bool
	noHost         bool
}

func (b *reqBuilder) set(k, v string) *reqBuilder {
	for i := range b.hdr {
		if strings.EqualFold(b.hdr[i][0], k) {
			b.hdr[i][1] = v
			return b
		}
	}
	b.hdr = append(b.hdr, [2]string{k, v})
	return b
}

func (b *reqBuilder) del(k string) *reqBuilder {
	out := b.hdr[:0]
	for _, h := range b.hdr {
		if !strings.EqualFold(h[0], k) {
			out = append(out, h)
		}
	}
	b.hdr = out
	return b
}

func (b *reqBuilder) build(host string) []byte {
	var w bytes.Buffer
	fmt.Fprintf(&w, "%s %s HTTP/1.1\r\n", b.method, b.target)
	if !b.noHost {
		fmt.Fprintf(&w, "Host: %s\r\n", host)
	}
	for _, h := range b.hdr {
		fmt.Fprintf(&w, "%s: %s\r\n", h[0], h[1])
	}
	if !b.noLength {
		fmt.Fprintf(&w, "Content-Length: %d\r\n", len(b.body))
	}
	w.WriteString("\r\n")
	return w.Bytes()
}

// mcpPost is a well-formed POST of body to the endpoint at revision rev,
// with a valid token.
func (e *hostileEnv) mcpPost(body, rev, method, name string) *reqBuilder {
	b := &reqBuilder{method: "POST", target: e.path, body: []byte(body)}
	b.set("Content-Type", "application/json")
	b.set("Accept", "application/json, text/event-stream")
	b.set("Authorization", "Bearer "+e.good)
	b.set("Mcp-Protocol-Version", rev)
	if rev == defaultRevision {
		if method != "" {
			b.set("Mcp-Method", method)
		}
		if name != "" {
			b.set("Mcp-Name", name)
		}
	}
	return b
}

func pick[T any](rng *rand.Rand, s []T) T { return s[rng.IntN(len(s))] }

func randToken(rng *rand.Rand, n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}

// refused is the set of statuses a refused request may get.
var refused = []int{400, 401, 403, 404, 405, 413, 431}

// genHostile builds case i of the flood.
func genHostile(rng *rand.Rand, e *hostileEnv, i int) hostileCase {
	id := "h-" + strconv.Itoa(i)
	revs := []string{defaultRevision, rev20251125, rev20250618, rev20250326}
	rev := pick(rng, revs)
	whoami := callJSON(id, "whoami", rev)
	c := hostileCase{allowed: statuses(refused...)}
	finish := func(kind string, b *reqBuilder) hostileCase {
		c.kind = kind
		c.method = b.method
		c.head = b.build(e.host)
		if c.body == nil {
			c.body = b.body
		}
		return c
	}
	switch k := rng.IntN(100); {
	case k < 5: // a legitimate call (tracked exactly)
		c.control, c.allowed = true, statuses(200)
		return finish("control", e.mcpPost(callJSON("ctl-"+strconv.Itoa(i), "whoami", defaultRevision), defaultRevision, "tools/call", "whoami"))

	case k < 25: // bad, forged or misplaced tokens on a valid call
		b := e.mcpPost(whoami, rev, "tools/call", "whoami")
		c.allowed = statuses(400, 401)
		switch rng.IntN(10) {
		case 0:
			b.del("Authorization")
			return finish("auth/none", b)
		case 1:
			b.set("Authorization", "Bearer "+pick(rng, e.badToks))
			return finish("auth/bad-token", b)
		case 2:
			b.set("Authorization", "Bearer "+randToken(rng, 20)+"."+randToken(rng, 60)+"."+randToken(rng, 80))
			return finish("auth/forged", b)
		case 3:
			b.del("Authorization")
			b.target += "?access_token=" + e.good
			return finish("auth/query-token", b)
		case 4:
			b.target += "?access_token=" + pick(rng, e.badToks)
			return finish("auth/query-and-header", b)
		case 5:
			b.set("Authorization", pick(rng, []string{"Basic YWdlbnQ6c2VjcmV0", "Bearer", "Bearer ", "Bearer " + e.good + " " + e.good,
				"Token " + e.good, "Bearer\t" + pick(rng, e.badToks), "Bearer " + e.good[:len(e.good)/2] + "=" + e.good[len(e.good)/2+1:]}))
			return finish("auth/malformed", b)
		case 6:
			b.hdr = append(b.hdr, [2]string{"Authorization", "Bearer " + pick(rng, e.badToks)})
			return finish("auth/two-headers", b)
		case 7:
			b.set("Authorization", "Bearer "+e.bigToken)
			return finish("auth/oversized-token", b)
		case 8:
			// A valid token signature-swapped onto other claims.
			parts := strings.Split(e.good, ".")
			claims := pick(rng, []map[string]any{{"sub": "root"}, {"scope": "mcp:read mcp:write"}, {"exp": 4102444800}, {"aud": "*"}})
			payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
			var m map[string]any
			_ = json.Unmarshal(payload, &m)
			for k, v := range claims {
				m[k] = v
			}
			payload, _ = json.Marshal(m)
			b.set("Authorization", "Bearer "+parts[0]+"."+base64.RawURLEncoding.EncodeToString(payload)+"."+parts[2])
			return finish("auth/spliced", b)
		default:
			b.del("Authorization")
			b.set("Cookie", "access_token="+e.good)
			b.set("X-Access-Token", e.good)
			return finish("auth/other-carriers", b)
		}

	case k < 50: // malformed or smuggling bodies with a valid token
		c.allowed = statuses(400)
		var body string
		kind := "body/"
		switch rng.IntN(16) {
		case 0:
			body = whoami[:rng.IntN(len(whoami))]
			kind += "truncated"
		case 1:
			bs := make([]byte, 1+rng.IntN(512))
			for j := range bs {
				bs[j] = byte(rng.IntN(256))
			}
			body = string(bs)
			kind += "random-bytes"
		case 2:
			c.body, c.allowed, c.fresh = e.huge, statuses(413), true
			kind += "huge"
		case 3:
			depth := 64 + rng.IntN(200000)
			open, close := "[", "]"
			if rng.IntN(2) == 0 {
				open, close = `{"a":`, "}"
			}
			body = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":` +
				strings.Repeat(open, depth) + "1" + strings.Repeat(close, depth) + "}}"
			kind += "deep"
		case 4:
			body = fmt.Sprintf(`{"jsonrpc":"2.0","id":%q,"method":"tools/call","method":"ping","params":{"name":"whoami"}}`, id)
			kind += "duplicate-method"
		case 5:
			a, b := "whoami", "sleep"
			if rng.IntN(2) == 0 {
				a, b = b, a
			}
			body = fmt.Sprintf(`{"jsonrpc":"2.0","id":%q,"method":"tools/call","params":{"name":%q,"arguments":{},"name":%q}}`, id, a, b)
			kind += "duplicate-name"
		case 6:
			key := pick(rng, []string{`"Method"`, `"METHOD"`, `"mEthod"`, `"\u006dethod"`, `"meth\u006fd"`})
			body = fmt.Sprintf(`{"jsonrpc":"2.0","id":%q,"method":"tools/call",%s:"ping","params":{"name":"whoami"}}`, id, key)
			kind += "method-variant"
		case 7:
			key := pick(rng, []string{`"Name"`, `"NAME"`, `"n\u0061me"`, `"\u006eame"`, `"nAme"`})
			body = fmt.Sprintf(`{"jsonrpc":"2.0","id":%q,"method":"tools/call","params":{"name":"whoami",%s:"sleep"}}`, id, key)
			kind += "name-variant"
		case 8:
			key := pick(rng, []string{`"Params"`, `"paramſ"`, `"p\u0061rams"`, `"PARAMS"`})
			body = fmt.Sprintf(`{"jsonrpc":"2.0","id":%q,"method":"tools/call","params":{"name":"whoami"},%s:{"name":"sleep"}}`, id, key)
			kind += "params-variant"
		case 9:
			body = "[" + callJSON(id+"a", "whoami", rev) + "," + callJSON(id+"b", "sleep", rev) + "]"
			if rev == rev20250326 {
				// Batches are allowed at 2025-03-26, all or nothing: the
				// sleep element needs mcp:write.
				c.allowed = statuses(400, 403)
			}
			kind += "batch"
		case 10:
			body = pick(rng, []string{"[]", "null", "1", `"tools/call"`, "true", "{}", "[[]]", "[1,2]"})
			kind += "not-a-message"
		case 11:
			body = pick(rng, []string{
				`{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"whoami"}}`,
				`{"id":1,"method":"tools/call","params":{"name":"whoami"}}`,
				`{"jsonrpc":"2.0","id":1,"method":7,"params":{"name":"whoami"}}`,
				`{"jsonrpc":"2.0","id":{"a":1},"method":"tools/call","params":{"name":"whoami"}}`,
				`{"jsonrpc":"2.0","id":1,"method":"tools/call","result":{},"params":{"name":"whoami"}}`,
				`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"whoami"}`,
				`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}`,
			})
			kind += "not-json-rpc"
		case 12:
			// (A NUL byte after the value is TestReliabilityTrailingNULRefused.)
			body = whoami + pick(rng, []string{"x", "{}", " " + whoami, ",", "]", "\x01", ` \u0000`})
			kind += "trailing-data"
		case 13:
			// A name the gateway must decode before deciding: escaped
			// "sleep" is sleep (needs mcp:write).
			body = fmt.Sprintf(`{"jsonrpc":"2.0","id":%q,"method":"tools\/call","params":{"name":"%s","arguments":{}}}`, id,
				pick(rng, []string{`\u0073leep`, `sl\u0065ep`, `\u0073\u006c\u0065\u0065\u0070`}))
			c.allowed = statuses(400, 403)
			kind += "escaped-denied-name"
		case 14:
			body = strings.Replace(whoami, `"whoami"`, pick(rng, []string{"\"who\xffami\"", "\"who\xc0\xafami\"", `"whoami`, `"who` + "\x01" + `ami"`, `"who\qami"`, `"who\u00"`}), 1)
			kind += "bad-string"
		default:
			body = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{"x":` + strings.Repeat("9", 100+rng.IntN(2000)) + `e999999999}},}`
			kind += "bad-number"
		}
		b := e.mcpPost(body, rev, "tools/call", "whoami")
		if c.body != nil { // huge: Content-Length of the shared body
			b.body = c.body
		}
		return finish(kind, b)

	case k < 60: // well-formed calls the policy refuses
		if rng.IntN(2) == 0 {
			c.allowed = statuses(403)
			return finish("policy/needs-scope", e.mcpPost(callJSON(id, "sleep", rev), rev, "tools/call", "sleep"))
		}
		c.allowed, c.deny = statuses(200), true
		return finish("policy/denied", e.mcpPost(callJSON(id, "countdown", rev), rev, "tools/call", "countdown"))

	case k < 70: // 2026-07-28 headers that disagree with the body, injection attempts
		b := e.mcpPost(callJSON(id, "whoami", defaultRevision), defaultRevision, "tools/call", "whoami")
		switch rng.IntN(8) {
		case 0:
			b.del("Mcp-Method")
			return finish("headers/no-mcp-method", b)
		case 1:
			b.set("Mcp-Method", pick(rng, []string{"ping", "tools/list", "Tools/Call", "tools/call/", "tools/calls", "initialize"}))
			return finish("headers/mcp-method-mismatch", b)
		case 2:
			b.del("Mcp-Name")
			return finish("headers/no-mcp-name", b)
		case 3:
			b.set("Mcp-Name", pick(rng, []string{"sleep", "WHOAMI", "whoami2", "=?base64?c2xlZXA=?=", "=?base64?!!!?=", "who%61mi"}))
			return finish("headers/mcp-name-mismatch", b)
		case 4:
			// Body names the denied tool, the headers the allowed one.
			b = e.mcpPost(callJSON(id, "sleep", defaultRevision), defaultRevision, "tools/call", "whoami")
			return finish("headers/name-spoof", b)
		case 5:
			c.fresh = true
			b.set("Mcp-Name", pick(rng, []string{"whoami\rX-Injected: 1", "whoami\r\n X-Folded: 1", "who\x00ami", "whoami\x7f"}))
			return finish("headers/injection", b)
		case 6:
			c.fresh = true
			b.hdr = append(b.hdr, [2]string{pick(rng, []string{"Bad Header", "X-Ü", "X-(a)", "", "X\x00Y"}), "1"})
			return finish("headers/invalid-name", b)
		default:
			c.fresh = true
			b.set("X-Padding", strings.Repeat("p", (1<<20)+rng.IntN(8192)))
			b.set("Authorization", "Bearer "+pick(rng, e.badToks))
			c.allowed = statuses(431)
			return finish("headers/oversized", b)
		}

	case k < 75: // odd methods on the endpoint
		m := pick(rng, []string{"PUT", "PATCH", "TRACE", "PROPFIND", "FOO", "HEAD", "MKCOL", "LINK"})
		b := e.mcpPost(whoami, rev, "tools/call", "whoami")
		b.method = m
		c.fresh = m == "HEAD"
		if rng.IntN(2) == 0 {
			b.del("Authorization")
		}
		c.allowed = statuses(405)
		return finish("method/"+m, b)

	case k < 83: // paths near the endpoint, with no token or a denied tool
		p := pick(rng, []string{e.path + "/", e.path + "/..", e.path + "/../mcp", "/./" + strings.TrimPrefix(e.path, "/"), "/" + e.path,
			strings.Replace(e.path, "/", "%2F", -1), strings.Replace(e.path, "/", "%2f", 2), e.path + "%2F..", e.path + "%00",
			e.path + ";x=1", strings.ToUpper(e.path), "/%61cme/mcp", "/acme/./mcp", "/acme//mcp", "/acme/x/../mcp", "/acme/mcp/%2e%2e/mcp",
			e.path + "?", e.path + "#frag", "/.well-known/../acme/mcp", "*", "http://" + e.host + e.path, "http://evil.example" + e.path})
		var b *reqBuilder
		if rng.IntN(2) == 0 {
			b = e.mcpPost(whoami, rev, "tools/call", "whoami")
			b.del("Authorization")
		} else {
			b = e.mcpPost(callJSON(id, "sleep", rev), rev, "tools/call", "sleep")
		}
		b.target = p
		c.fresh = true
		return finish("path", b)

	case k < 88: // session ids that were never issued
		b := e.mcpPost(callJSON(id, "whoami", rev20251125), rev20251125, "", "")
		sid := pick(rng, []string{
			randToken(rng, 16), randToken(rng, 64+rng.IntN(512)), randToken(rng, 64<<10+rng.IntN(256<<10)),
			"../../etc/passwd", "0", strings.Repeat("A", 43) + "=", base64.RawURLEncoding.EncodeToString([]byte("forged session")),
		})
		b.set("Mcp-Session-Id", sid)
		if len(sid) > 32<<10 {
			c.fresh = true
		}
		c.allowed = statuses(400, 404, 431)
		return finish("session/unknown", b)

	default: // HTTP framing: smuggling, broken chunking, bad request lines
		c.fresh = true
		b := e.mcpPost(whoami, rev, "tools/call", "whoami")
		switch rng.IntN(7) {
		case 0:
			// CL.TE with a smuggled call behind: each request is refused.
			smuggled := e.mcpPost(callJSON(id+"s", "sleep", rev), rev, "tools/call", "sleep")
			b.set("Authorization", "Bearer "+pick(rng, e.badToks))
			b.set("Transfer-Encoding", "chunked")
			b.noLength = true
			b.hdr = append(b.hdr, [2]string{"Content-Length", strconv.Itoa(len(whoami))})
			chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(whoami), whoami)
			b.body = []byte(chunked)
			c.extra = append(smuggled.build(e.host), smuggled.body...)
			return finish("framing/cl-te", b)
		case 1:
			b.noLength = true
			b.hdr = append(b.hdr, [2]string{"Content-Length", strconv.Itoa(len(whoami))}, [2]string{"Content-Length", strconv.Itoa(len(whoami) - 3)})
			return finish("framing/two-lengths", b)
		case 2:
			// A short Content-Length: the rest arrives as a second request.
			smuggled := e.mcpPost(callJSON(id+"s", "countdown", rev), rev, "tools/call", "countdown")
			cut := 5 + rng.IntN(len(whoami)-10)
			b.body = []byte(whoami[:cut])
			c.extra = append([]byte(whoami[cut:]), append(smuggled.build(e.host), smuggled.body...)...)
			c.allowed = statuses(append(refused, 200)...)
			c.deny = true
			return finish("framing/short-length", b)
		case 3:
			b.noLength = true
			b.set("Transfer-Encoding", "chunked")
			b.body = []byte(fmt.Sprintf("%x\r\n%s\r\nzz\r\n", len(whoami)+2, whoami))
			return finish("framing/bad-chunks", b)
		case 4:
			b.noLength = true
			b.set("Transfer-Encoding", pick(rng, []string{"xchunked", "chunked, identity", "identity", "gzip, chunked"}))
			b.body = []byte(fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(whoami), whoami))
			// net/http answers 501 to a transfer coding it does not implement.
			c.allowed = statuses(400, 501)
			return finish("framing/transfer-coding", b)
		case 5:
			b.method = pick(rng, []string{"POST /x", "PO\x00ST", "POST\t", ""})
			return finish("framing/request-line", b)
		default:
			b.noHost = rng.IntN(2) == 0
			if !b.noHost {
				b.hdr = append(b.hdr, [2]string{"Host", "evil.example"})
			}
			return finish("framing/host", b)
		}
	}
}

// hostileResult is what came back for one case.
type hostileResult struct {
	statuses []int
	bodies   []string
	err      error
}

// hostileConn is one worker's keep-alive connection.
type hostileConn struct {
	addr string
	conn net.Conn
	br   *bufio.Reader
}

func (h *hostileConn) close() {
	if h.conn != nil {
		h.conn.Close()
		h.conn, h.br = nil, nil
	}
}

func (h *hostileConn) dial() error {
	c, err := net.DialTimeout("tcp", h.addr, 5*time.Second)
	if err != nil {
		return err
	}
	h.conn, h.br = c, bufio.NewReaderSize(c, 64<<10)
	return nil
}

// send writes the case (concurrently with reading, so a refusal before the
// whole body is read still arrives) and reads the response(s).
func (h *hostileConn) send(c *hostileCase) hostileResult {
	var res hostileResult
	fresh := c.fresh || h.conn == nil
	if fresh {
		h.close()
		if err := h.dial(); err != nil {
			return hostileResult{err: err}
		}
	}
	_ = h.conn.SetDeadline(time.Now().Add(30 * time.Second))
	werr := make(chan error, 1)
	conn := h.conn
	go func() {
		_, err := conn.Write(c.head)
		if err == nil && len(c.body) > 0 {
			_, err = conn.Write(c.body)
		}
		if err == nil && len(c.extra) > 0 {
			_, err = conn.Write(c.extra)
		}
		werr <- err
	}()
	for {
		var req *http.Request
		if len(res.statuses) == 0 && c.method == "HEAD" {
			req = &http.Request{Method: "HEAD"}
		}
		resp, err := http.ReadResponse(h.br, req)
		if err != nil {
			if len(res.statuses) == 0 {
				h.close()
				res.err = fmt.Errorf("reading the response: %v (write: %v)", err, <-werr)
				return res
			}
			break
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil && resp.Close && (resp.StatusCode == 400 || resp.StatusCode == 431 || resp.StatusCode == 501) {
			// net/http's own answer to a malformed request, whose
			// connection it closes at once (the RST may cut the body).
			err = nil
		}
		if err != nil {
			res.err = fmt.Errorf("status %d, reading the body: %v", resp.StatusCode, err)
			h.close()
			<-werr
			return res
		}
		res.statuses = append(res.statuses, resp.StatusCode)
		res.bodies = append(res.bodies, string(body))
		if resp.Close || len(c.extra) == 0 {
			break
		}
		// A fresh connection may carry more responses (smuggled requests).
		_ = h.conn.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
	}
	if c.fresh {
		h.close()
		select {
		case <-werr:
		case <-time.After(5 * time.Second):
		}
		return res
	}
	if err := <-werr; err != nil {
		h.close()
	}
	return res
}

// hostileGateway is a gateway with one protected server (/acme/mcp) whose
// policy denies the countdown tool (scope mcp:danger) and whose sleep tool
// needs mcp:write, which the agent's token lacks; everything else on the
// site answers 404.
type hostileGateway struct {
	op             *oidctest.Provider
	up             *upstream
	caddy          *caddyProc
	host, endpoint string
	good           string // the agent's token: mcp:read mcp:danger
}

func startHostileGateway(t *testing.T) *hostileGateway {
	t.Helper()
	op := startProvider(t, oidctest.WithClients(
		oidctest.Client{ID: "agent", Secret: agentSecret, GrantTypes: []string{oidctest.GrantClientCredentials},
			Scopes: []string{"mcp:read", "mcp:danger"}, Subject: "alice"},
	))
	up := newUpstream(t, "acme")
	_, _ = drainUpstream(t, up)
	port := freePort(t)
	host := fmt.Sprintf("127.0.0.1:%d", port)
	endpoint := "http://" + host + "/acme/mcp"
	c := startCaddy(t, caddyConfig{
		Global: fmt.Sprintf(`mcp {
	issuer %s
	tenant acme
	policy everyone {
		allow
		agents *
		scopes mcp:*
	}
	policy no-danger {
		deny
		agents *
		scopes mcp:danger
	}
}`, op.Issuer()),
		Sites: fmt.Sprintf(`http://:%d {
	route {
		mcp_gateway {
			server acme {
				tenant acme
				path /acme/mcp
				upstream %s
				require mcp:read
				tool sleep mcp:write
				tool countdown mcp:danger
				tool * mcp:read
			}
		}
		respond "not found" 404
	}
}`, port, up.URL),
		WaitPorts: []int{port},
	})
	ctx, cancel := testContext(t, 30)
	defer cancel()
	good, err := op.AgentToken(ctx, "agent", endpoint, "mcp:read", "mcp:danger")
	if err != nil {
		t.Fatal(err)
	}
	return &hostileGateway{op: op, up: up, caddy: c, host: host, endpoint: endpoint, good: good}
}

// TestReliabilityTrailingNULRefused proves that a body with data after its JSON value
// is refused even when that data starts with a NUL byte: the gateway must
// not authorize the first message and forward bytes it never inspected
// (an upstream that reads on would see a second, unauthorized call).
func TestReliabilityTrailingNULRefused(t *testing.T) {
	t.Parallel()
	g := startHostileGateway(t)
	ctx, cancel := testContext(t, 30)
	defer cancel()
	hc := &http.Client{Timeout: 20 * time.Second}
	meta := `,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"nul","version":"1"}}`
	for _, trailer := range []string{"\x00", "\x00garbage", "\x00" + `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"sleep","arguments":{}` + meta + `}}`} {
		body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}` + meta + `}}` + trailer
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.endpoint, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+g.good)
		req.Header.Set("Mcp-Protocol-Version", defaultRevision)
		req.Header.Set("Mcp-Method", "tools/call")
		req.Header.Set("Mcp-Name", "whoami")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		rb, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GATEWAY BUG (mcpmsg/inspect.go: the trailing-data check `s.peek() != 0` takes a NUL byte for the end of input): "+
				"a body with %q after its JSON value got %d, want 400, and was forwarded: %.200q", trailer, resp.StatusCode, rb)
		}
	}
	if n := len(g.up.Requests()); n != 0 {
		t.Errorf("the upstream received %d bodies with uninspected trailing data:\n%s", n, g.up.Summary())
	}
}

// TestReliabilityHostileInput proves that 10 000 requests of random hostile
// input (seeded, reproducible with MCPGW_HOSTILE_SEED) sent by 16 workers
// never panic the gateway, never reach the upstream unless legitimate (the
// recording upstream sees exactly the control calls), always get a
// well-formed HTTP response with the status their defect calls for (no 5xx
// except net/http's 501 for an unknown transfer coding), and leave the
// gateway healthy with no goroutines left behind.
func TestReliabilityHostileInput(t *testing.T) {
	t.Parallel()
	n := 10000
	if testing.Short() {
		n = 2000
	}
	if v, err := strconv.Atoi(os.Getenv("MCPGW_HOSTILE_N")); err == nil && v > 0 {
		n = v
	}
	seed := uint64(20260728)
	if v, err := strconv.ParseUint(os.Getenv("MCPGW_HOSTILE_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("hostile input: %d requests, seed %d (MCPGW_HOSTILE_SEED, MCPGW_HOSTILE_N)", n, seed)

	g := startHostileGateway(t)
	op, up, c, host, endpoint, good := g.op, g.up, g.caddy, g.host, g.endpoint, g.good
	ctx, cancel := testContext(t, 150)
	defer cancel()
	now := time.Now().Unix()
	sign := func(claims map[string]any) string {
		base := map[string]any{"sub": "alice", "client_id": "agent", "aud": endpoint, "scope": "mcp:read mcp:danger"}
		for k, v := range claims {
			base[k] = v
		}
		s, err := op.Sign(base)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	parts := strings.Split(good, ".")
	seg := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	env := &hostileEnv{
		host: host, path: "/acme/mcp", good: good,
		badToks: []string{
			sign(map[string]any{"exp": now - 3600, "iat": now - 7200}),
			sign(map[string]any{"nbf": now + 3600}),
			sign(map[string]any{"iss": "https://evil.example"}),
			sign(map[string]any{"aud": "http://" + host + "/other/mcp"}),
			sign(map[string]any{"aud": "http://evil.example/acme/mcp"}),
			seg(map[string]any{"alg": "none", "typ": "JWT"}) + "." + parts[1] + ".",
			seg(map[string]any{"alg": "HS256", "typ": "JWT", "kid": op.KeyID()}) + "." + parts[1] + "." + parts[2],
			seg(map[string]any{"alg": "RS256", "kid": "unknown-kid"}) + "." + parts[1] + "." + parts[2],
			parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])),
			parts[0] + "." + seg(map[string]any{"sub": "root", "aud": endpoint, "scope": "mcp:write", "exp": now + 3600}) + "." + parts[2],
			good[:len(good)-8],
		},
		bigToken: randToken(rand.New(rand.NewPCG(seed, 1)), 20000),
	}
	env.huge = []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{"pad":"` +
		strings.Repeat("x", 4<<20) + `"}}}`)

	// Warm-up: a good call works.
	hc := &http.Client{Timeout: 20 * time.Second}
	if st, body, err := statelessCall(ctx, hc, endpoint, good, "whoami", nil); err != nil || st != 200 {
		t.Fatalf("warm-up call: %d %v %.300s", st, err, body)
	}
	forwardedBefore := len(up.Requests())
	goroutinesBefore := gatewayGoroutines(t, c)

	rng := rand.New(rand.NewPCG(seed, 0))
	cases := make([]hostileCase, n)
	for i := range cases {
		cases[i] = genHostile(rng, env, i)
	}
	results := make([]hostileResult, n)
	start := time.Now()
	const workers = 16
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hcn := &hostileConn{addr: host}
			defer hcn.close()
			for i := range next {
				reused := hcn.conn != nil && !cases[i].fresh
				results[i] = hcn.send(&cases[i])
				if reused && results[i].err != nil && len(results[i].statuses) == 0 && !cases[i].control {
					// The kept-alive connection may have been closed under
					// us: once more on a new one.
					results[i] = hcn.send(&cases[i])
				}
			}
		}()
	}
	for i := range cases {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)

	// Check every response.
	type tally struct{ n, bad int }
	kinds := map[string]*tally{}
	controls := map[string]bool{}
	var failures []string
	fail := func(i int, format string, args ...any) {
		if len(failures) < 40 {
			c := cases[i]
			req := string(c.head)
			if len(req) > 600 {
				req = req[:600] + "..."
			}
			body := string(c.body)
			if len(body) > 300 {
				body = body[:300] + "..."
			}
			failures = append(failures, fmt.Sprintf("#%d %s: %s\n    request: %q\n    body: %q", i, c.kind, fmt.Sprintf(format, args...), req, body))
		} else if len(failures) == 40 {
			failures = append(failures, "(more failures not shown)")
		}
	}
	statusCount := map[int]int{}
	for i, r := range results {
		c := cases[i]
		tl := kinds[c.kind]
		if tl == nil {
			tl = &tally{}
			kinds[c.kind] = tl
		}
		tl.n++
		bad := func(format string, args ...any) {
			tl.bad++
			fail(i, format, args...)
		}
		if r.err != nil {
			bad("no well-formed HTTP response: %v", r.err)
			continue
		}
		for j, st := range r.statuses {
			statusCount[st]++
			if !c.allowed[st] {
				bad("status %d (want one of %v); body %.300q", st, keys(c.allowed), r.bodies[j])
				continue
			}
			if st == 200 && c.deny {
				e, err := parseRPCError(r.bodies[j])
				if err != nil || e.Error.Code != -32602 || !strings.Contains(e.Error.Message, "Unknown tool") {
					bad("200 is not the policy's Unknown tool error: %.300q", r.bodies[j])
				}
			}
			if c.control && st == 200 {
				controls["ctl-"+strconv.Itoa(i)] = true
				if !strings.Contains(r.bodies[j], "upstream=acme") {
					bad("control call: %.300q", r.bodies[j])
				}
			}
		}
	}
	names := make([]string, 0, len(kinds))
	for k := range kinds {
		names = append(names, k)
	}
	sort.Strings(names)
	var sum strings.Builder
	for _, k := range names {
		fmt.Fprintf(&sum, "  %-32s %5d", k, kinds[k].n)
		if kinds[k].bad > 0 {
			fmt.Fprintf(&sum, "  FAILED %d", kinds[k].bad)
		}
		sum.WriteString("\n")
	}
	t.Logf("%d requests in %s (%.0f req/s); statuses %v; by kind:\n%s", n, elapsed.Round(time.Millisecond),
		float64(n)/elapsed.Seconds(), statusCount, sum.String())
	for _, f := range failures {
		t.Error(f)
	}

	// The upstream saw exactly the control calls, nothing else.
	var unexpected []string
	seen := map[string]int{}
	for _, r := range up.Requests()[forwardedBefore:] {
		var msg struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Name string `json:"name"`
			} `json:"params"`
		}
		_ = json.Unmarshal(r.Body, &msg)
		var id string
		_ = json.Unmarshal(msg.ID, &id)
		if !strings.HasPrefix(id, "ctl-") || msg.Method != "tools/call" || msg.Params.Name != "whoami" || r.Method != "POST" {
			unexpected = append(unexpected, fmt.Sprintf("%s %s id=%s method=%s name=%s body=%.200q", r.Method, r.Path, msg.ID, msg.Method, msg.Params.Name, r.Body))
			continue
		}
		seen[id]++
	}
	if len(unexpected) > 0 {
		t.Errorf("the upstream received %d requests the gateway should have refused:\n  %s", len(unexpected), strings.Join(unexpected[:min(len(unexpected), 20)], "\n  "))
	}
	for id, k := range seen {
		if k != 1 || !controls[id] {
			t.Errorf("control %s reached the upstream %d times (answered 200: %v)", id, k, controls[id])
		}
	}
	if len(seen) != len(controls) {
		t.Errorf("%d control calls answered 200, %d reached the upstream", len(controls), len(seen))
	}

	// Healthy afterwards, and no panic on the way.
	if st, body, err := statelessCall(ctx, hc, endpoint, good, "whoami", nil); err != nil || st != 200 || !strings.Contains(body, "upstream=acme") {
		t.Fatalf("after the flood: %d %v %.300s", st, err, body)
	}
	// Nothing the flood started lingers in the gateway.
	if n := settleGoroutines(t, c, goroutinesBefore+25, 15*time.Second); n > goroutinesBefore+25 {
		t.Errorf("%d goroutines after the flood, %d before", n, goroutinesBefore)
	} else {
		t.Logf("goroutines: %d before the flood, %d after", goroutinesBefore, n)
	}
	assertNoPanic(t, c)
	assertNoSecretsLogged(t, c, good)
}

func keys(m map[int]bool) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}
