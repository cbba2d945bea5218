package mcpmsg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

func TestInspectOK(t *testing.T) {
	cases := []struct {
		body string
		want Message
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_invoice","arguments":{"x":[1,{"y":null}]}}}`,
			Message{Kind: KindRequest, ID: json.RawMessage(`1`), Method: "tools/call", Name: "read_invoice", HasName: true}},
		{` {"method":"tools/list","id":"a\"b","jsonrpc":"2.0"} `,
			Message{Kind: KindRequest, ID: json.RawMessage(`"a\"b"`), Method: "tools/list"}},
		{`{"jsonrpc":"2.0","id":-1.5e3,"method":"resources/read","params":{"uri":"file:///x"}}`,
			Message{Kind: KindRequest, ID: json.RawMessage(`-1.5e3`), Method: "resources/read", URI: "file:///x", HasURI: true}},
		{`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
			Message{Kind: KindNotification, Method: "notifications/initialized"}},
		{`{"jsonrpc":"2.0","id":7,"result":{}}`, Message{Kind: KindResponse, ID: json.RawMessage(`7`)}},
		{`{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"x"}}`, Message{Kind: KindResponse, ID: json.RawMessage(`null`), IsError: true}},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t\u00e9","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}},"inputResponses":{"a":{}}}}`,
			Message{Kind: KindRequest, ID: json.RawMessage(`1`), Method: "tools/call", Name: "té", HasName: true, ProtocolVersion: "2026-07-28", InputResponses: true}},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","inputResponses":null}}`,
			Message{Kind: KindRequest, ID: json.RawMessage(`1`), Method: "tools/call", Name: "x", HasName: true}},
		{`{"jsonrpc":"2.0","id":1,"method":"x","params":null}`, Message{Kind: KindRequest, ID: json.RawMessage(`1`), Method: "x"}},
		{`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"name":5}}`, Message{Kind: KindRequest, ID: json.RawMessage(`1`), Method: "completion/complete", badName: true}},
		// No name / uri at all: nothing is targeted; the upstream answers
		// the malformed request with its own error for this id.
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call"}`, Message{Kind: KindRequest, ID: json.RawMessage(`1`), Method: "tools/call"}},
		{`{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{}}`, Message{Kind: KindRequest, ID: json.RawMessage(`1`), Method: "resources/subscribe"}},
		{`{"jsonrpc":"2.0","id":1,"\u006dethod":"tools/list"}`, Message{Kind: KindRequest, ID: json.RawMessage(`1`), Method: "tools/list"}},
	}
	for _, c := range cases {
		m, err := Inspect([]byte(c.body))
		if err != nil {
			t.Errorf("%s: %v", c.body, err)
			continue
		}
		if fmt.Sprintf("%+v", *m) != fmt.Sprintf("%+v", c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.body, *m, c.want)
		}
	}
}

func TestInspectBatch(t *testing.T) {
	m, err := Inspect([]byte(`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}}]`))
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != KindBatch || len(m.Batch) != 2 || m.Batch[1].Name != "x" || m.Method != "" {
		t.Fatalf("%+v", m)
	}
	for body, kind := range map[string]error{
		`[]`:  ErrEmptyBatch,
		`[ ]`: ErrEmptyBatch,
		`[1]`: ErrNotObject,
		`[{"jsonrpc":"2.0","id":1,"method":"a"},[]]`:                                        ErrNotObject,
		`[{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}]`:                              ErrDuplicateKey,
		`[{"jsonrpc":"2.0","id":1,"method":"a"},`:                                           ErrInvalidJSON,
		`[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}]`: ErrDuplicateKey,
	} {
		if _, err := Inspect([]byte(body)); !errors.Is(err, kind) {
			t.Errorf("%s: %v, want %v", body, err, kind)
		}
	}
}

func TestInspectRefuses(t *testing.T) {
	deep := strings.Repeat(`[`, 70) + strings.Repeat(`]`, 70)
	cases := []struct {
		body string
		kind error
		code int
	}{
		{``, ErrInvalidJSON, -32700},
		{`   `, ErrInvalidJSON, -32700},
		{`{`, ErrInvalidJSON, -32700},
		{`{"jsonrpc":"2.0","id":1,"method":"x"`, ErrInvalidJSON, -32700},
		{`{"jsonrpc":"2.0","id":1,"method":"x"}}`, ErrInvalidJSON, -32700},
		{`{"jsonrpc":"2.0","id":1,"method":"x"} x`, ErrInvalidJSON, -32700},
		{`{"jsonrpc":"2.0","id":01,"method":"x"}`, ErrInvalidJSON, -32700},
		{`{"jsonrpc":"2.0","id":1,"method":"x",}`, ErrInvalidJSON, -32700},
		{`{"jsonrpc":"2.0","id":1,"method":"a\x"}`, ErrInvalidJSON, -32700},
		{"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\x01\"}", ErrInvalidJSON, -32700},
		{"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}", ErrInvalidJSON, -32700},
		{"\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"}", ErrInvalidJSON, -32700},
		{`{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":tru}}`, ErrInvalidJSON, -32700},
		// A syntax error after a semantic one is still a parse error.
		{`{"jsonrpc":"2.0","id":{},"method":"x","a":nul}`, ErrInvalidJSON, -32700},
		{`"x"`, ErrNotObject, -32600},
		{`1`, ErrNotObject, -32600},
		{`null`, ErrNotObject, -32600},
		{`{"jsonrpc":"2.0","id":1,"method":"x","params":` + deep + `}`, ErrTooDeep, -32600},
		{`{"method":"tools/call","params":{"name":"read_invoice","name":"delete_invoice"}}`, ErrDuplicateKey, -32600},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_invoice","name":"delete_invoice"}}`, ErrDuplicateKey, -32600},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"x"}}`, ErrDuplicateKey, -32600},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list","\u006dethod":"tools/call"}`, ErrDuplicateKey, -32600},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list","Method":"tools/call"}`, ErrDuplicateKey, -32600},
		{`{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"x"}}`, ErrDuplicateKey, -32600},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","NAME":"b"}}`, ErrDuplicateKey, -32600},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","nameſ":"b","ſ":1,"uri":"x","urı":"y"}}`, nil, 0}, // not variants: accepted
		{`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"a","URİ":"b"}}`, nil, 0},
		{`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"a","\u0075ri":"b"}}`, ErrDuplicateKey, -32600},
		{"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"paramſ\":{}}", ErrDuplicateKey, -32600}, // ſ folds to s
		{`{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25","io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, ErrDuplicateKey, -32600},
		{`{"jsonrpc":"2.0","id":1,"method":"x","a":1,"a":2}`, ErrDuplicateKey, -32600},
		{`{"jsonrpc":"1.0","id":1,"method":"x"}`, ErrInvalidRequest, -32600},
		{`{"id":1,"method":"x"}`, ErrInvalidRequest, -32600},
		{`{"jsonrpc":"2.0","id":true,"method":"x"}`, ErrInvalidRequest, -32600},
		{`{"jsonrpc":"2.0","id":null,"method":"x"}`, ErrInvalidRequest, -32600},
		{`{"jsonrpc":"2.0","id":1,"method":5}`, ErrInvalidRequest, -32600},
		{`{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}`, ErrInvalidRequest, -32600},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}}`, ErrInvalidRequest, -32600},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}`, ErrInvalidRequest, -32600},
		{"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\"}}\x00{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"b\"}}", ErrInvalidJSON, -32700},
		{"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\x00", ErrInvalidJSON, -32700},
		{`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":{"x":1}}}`, ErrInvalidRequest, -32600},
		{`{"jsonrpc":"2.0","id":1,"method":"x","result":{}}`, ErrInvalidRequest, -32600},
		{`{"jsonrpc":"2.0","id":1,"result":{},"error":{}}`, ErrInvalidRequest, -32600},
		{`{"jsonrpc":"2.0","result":{}}`, ErrInvalidRequest, -32600},
		{`{"jsonrpc":"2.0","id":1}`, ErrInvalidRequest, -32600},
		{`{}`, ErrInvalidRequest, -32600},
	}
	for _, c := range cases {
		_, err := Inspect([]byte(c.body))
		if c.kind == error(nil) || c.code == 0 {
			if err != nil {
				t.Errorf("%s: %v", c.body, err)
			}
			continue
		}
		if !errors.Is(err, c.kind) {
			t.Errorf("%s: %v, want %v", c.body, err, c.kind)
			continue
		}
		if ErrorCode(err) != c.code || HTTPStatus(err) != 400 {
			t.Errorf("%s: code %d status %d", c.body, ErrorCode(err), HTTPStatus(err))
		}
	}
}

func TestInspectManyKeys(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{`)
	for i := range 40 {
		fmt.Fprintf(&b, `"k%d":%d,`, i, i)
	}
	b.WriteString(`"name":"a"}}`)
	if m, err := Inspect([]byte(b.String())); err != nil || m.Name != "a" {
		t.Fatal(m, err)
	}
	dup := strings.Replace(b.String(), `"name":"a"}`, `"name":"a","k\u0033":1}`, 1)
	if _, err := Inspect([]byte(dup)); !errors.Is(err, ErrDuplicateKey) {
		t.Fatal(err)
	}
}

func TestReadBody(t *testing.T) {
	b, err := ReadBody(strings.NewReader("abcd"), 4)
	if err != nil || string(b) != "abcd" {
		t.Fatal(b, err)
	}
	_, err = ReadBody(strings.NewReader("abcde"), 4)
	if !errors.Is(err, ErrTooLarge) || HTTPStatus(err) != 413 {
		t.Fatal(err)
	}
}

func TestErrorResponses(t *testing.T) {
	got := string(DeniedToolResponse(json.RawMessage(`"req-1"`), "delete_invoice", &ErrorData{Reason: "no policy grants scope", Policy: "partners", DecisionID: "d1"}))
	want := `{"jsonrpc":"2.0","id":"req-1","error":{"code":-32602,"message":"Unknown tool: delete_invoice","data":{"reason":"no policy grants scope","policy":"partners","decision_id":"d1"}}}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	got = string(ForbiddenResponse(json.RawMessage(`12`), &ErrorData{DecisionID: "d2"}))
	want = `{"jsonrpc":"2.0","id":12,"error":{"code":-32010,"message":"Forbidden by policy","data":{"decision_id":"d2"}}}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	got = string(ErrorResponse(nil, CodeHeaderMismatch, "Header mismatch: \"x\"", nil))
	want = `{"jsonrpc":"2.0","id":null,"error":{"code":-32020,"message":"Header mismatch: \"x\""}}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	_, err := Inspect([]byte(`{`))
	got = string(InspectErrorResponse(err))
	if !strings.Contains(got, `"code":-32700`) || !json.Valid([]byte(got)) {
		t.Error(got)
	}
	for _, c := range []int{CodeGatewayError, CodeConnectionError, CodeSessionNotFound, CodeForbiddenByPolicy} {
		if c < -32019 || c > -32000 {
			t.Errorf("code %d outside the implementation-defined range", c)
		}
	}
}

func TestCheckHeaders(t *testing.T) {
	call := mustInspect(t, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_invoice"}}`)
	uni := mustInspect(t, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"résumé"}}`)
	read := mustInspect(t, `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a b"}}`)
	list := mustInspect(t, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	note := mustInspect(t, `{"jsonrpc":"2.0","method":"notifications/cancelled"}`)
	resp := mustInspect(t, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	batch := mustInspect(t, `[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]`)
	cases := []struct {
		m            *Message
		method, name string
		ok           bool
	}{
		{call, "tools/call", "read_invoice", true},
		{call, "tools/call", "delete_invoice", false},
		{call, "tools/list", "read_invoice", false},
		{call, "", "read_invoice", false},
		{call, "tools/call", "", false},
		{call, "Tools/Call", "read_invoice", false},
		{call, "tools/call", "=?base64?cmVhZF9pbnZvaWNl?=", true},
		{call, "tools/call", "=?base64?cmVhZF9pbnZvaWNl?=x", false},
		{call, "tools/call", "=?base64?!!!?=", false},
		{uni, "tools/call", "=?base64?csOpc3Vtw6k=?=", true},
		{uni, "tools/call", "=?base64?csOpc3Vtw6k?=", true},
		{read, "resources/read", "file:///a b", true},
		{read, "resources/read", "file:///b", false},
		{list, "tools/list", "", true},
		{list, "tools/list", "whatever", true},
		{note, "notifications/cancelled", "", true},
		{note, "", "", false},
		{resp, "", "", true},
		{resp, "tools/call", "", false},
		{batch, "tools/list", "", false},
	}
	for i, c := range cases {
		err := CheckHeaders(c.m, c.method, c.name)
		if (err == nil) != c.ok {
			t.Errorf("#%d %s %q %q: %v", i, c.m.Method, c.method, c.name, err)
		}
		if err != nil && !errors.Is(err, ErrHeaderMismatch) {
			t.Errorf("#%d: %v is not ErrHeaderMismatch", i, err)
		}
	}
}

func mustInspect(t testing.TB, s string) *Message {
	t.Helper()
	m, err := Inspect([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func allowNames(names ...string) func(string) bool {
	return func(n string) bool {
		for _, x := range names {
			if x == n {
				return true
			}
		}
		return false
	}
}

func TestFilterToolsList(t *testing.T) {
	in := `{"jsonrpc":"2.0","id":3,"result":{"tools":[ {"name":"read_invoice","inputSchema":{"type":"object"}} , {"name":"delete_invoice","x":[1,2]},{"description":"no name"},{"name":"dup","name":"read_invoice"},{"name":"Read"},5 ],"nextCursor":"abc==","_meta":{"k":"v"},"ttlMs":60000}}`
	got, err := FilterToolsList([]byte(in), allowNames("read_invoice", "dup"), false)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"read_invoice","inputSchema":{"type":"object"}}],"nextCursor":"abc==","_meta":{"k":"v"},"ttlMs":60000}}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	got, err = FilterToolsList([]byte(in), allowNames("read_invoice"), true)
	if err != nil {
		t.Fatal(err)
	}
	want = `{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"read_invoice","inputSchema":{"type":"object"}}],"nextCursor":"abc==","_meta":{"k":"v"},"ttlMs":60000,"cacheScope":"private"}}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// cacheScope present before tools: replaced in place; all tools kept:
	// tools array byte-exact.
	in2 := `{"result":{"cacheScope":"shared", "tools":[ {"name":"a"} ]},"id":"x","jsonrpc":"2.0"}`
	got, _ = FilterToolsList([]byte(in2), allowNames("a"), true)
	if string(got) != `{"result":{"cacheScope":"private", "tools":[ {"name":"a"} ]},"id":"x","jsonrpc":"2.0"}` {
		t.Error(string(got))
	}
	// Nothing to change: same slice.
	got, _ = FilterToolsList([]byte(in2), allowNames("a"), false)
	if &got[0] != &[]byte(in2)[0] && string(got) != in2 {
		t.Error(string(got))
	}
	// Unchanged: error responses, results without tools, non-responses.
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"prompts":[]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{}}`,
	} {
		got, err := FilterToolsList([]byte(s), allowNames(), true)
		if err != nil || string(got) != s {
			t.Errorf("%s: %s %v", s, got, err)
		}
	}
	// Empty tools list.
	got, _ = FilterToolsList([]byte(`{"id":1,"result":{"tools":[]}}`), allowNames(), true)
	if string(got) != `{"id":1,"result":{"tools":[],"cacheScope":"private"}}` {
		t.Error(string(got))
	}
	// Batch: every response with tools.
	got, _ = FilterToolsList([]byte(`[{"id":1,"result":{"tools":[{"name":"a"},{"name":"b"}]}},{"id":2,"result":{}}]`), allowNames("b"), false)
	if string(got) != `[{"id":1,"result":{"tools":[{"name":"b"}]}},{"id":2,"result":{}}]` {
		t.Error(string(got))
	}
	// Refused (fail closed).
	for _, s := range []string{
		`{"id":1,"result":{"tools":[{"name":"a"}],"tools":[{"name":"b"}]}}`,
		`{"id":1,"result":{"tools":[{"name":"a"}],"Tools":[{"name":"b"}]}}`,
		`{"id":1,"result":{"tools":{"name":"a"}}}`,
		`{"id":1,"result":{"tools":[{"name":"a"}]},"result":{"tools":[{"name":"b"}]}}`,
		`{"id":1,"result":{"tools":[{"name":"a"}]}`,
	} {
		if _, err := FilterToolsList([]byte(s), allowNames("a"), false); !errors.Is(err, ErrBadToolsList) {
			t.Errorf("%s: %v", s, err)
		}
	}
}

// parseSSE returns the events (data + other fields) as an EventSource would.
func parseSSE(s string) []string {
	s = strings.TrimPrefix(s, "\uFEFF")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	var events []string
	var cur []string
	var data []string
	hasData := false
	lines := strings.Split(s, "\n")
	lines = lines[:len(lines)-1] // the last line is incomplete (or empty)
	for _, line := range lines {
		if line == "" {
			if hasData || len(cur) > 0 {
				events = append(events, strings.Join(cur, "|")+"|data="+strings.Join(data, "\n"))
			}
			cur, data, hasData = nil, nil, false
			continue
		}
		name, val, _ := strings.Cut(line, ":")
		val = strings.TrimPrefix(val, " ")
		if strings.HasPrefix(line, ":") {
			continue
		}
		if name == "data" {
			data = append(data, val)
			hasData = true
		} else {
			cur = append(cur, name+"="+val)
		}
	}
	return events
}

func runSSE(t testing.TB, input string, chunk int, transform func([]byte) ([]byte, error)) (string, int) {
	var out bytes.Buffer
	flushes := 0
	f := NewSSEFilter(&out, func() { flushes++ }, transform)
	b := []byte(input)
	for len(b) > 0 {
		n := min(chunk, len(b))
		if _, err := f.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String(), flushes
}

func TestSSEFilter(t *testing.T) {
	list := `{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"a"},{"name":"b"}]}}`
	streams := []string{
		": keep-alive\n\nretry: 1000\n\nevent: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\nid: 2\nevent: message\ndata: " + list + "\n\n",
		"event: message\r\nid: 7\r\ndata: " + list + "\r\n\r\n: c\r\n\r\n",
		"event: message\rid: 7\rdata: " + list + "\r\r",
		// multi-line data
		"id: 9\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\ndata: \"result\":{\"tools\":[{\"name\":\"a\"},\ndata:{\"name\":\"b\"}]}}\nevent: message\n\n",
		"\uFEFFdata: " + list + "\n\n",
	}
	tr := ToolsListTransform([]json.RawMessage{json.RawMessage(`2`)}, allowNames("b"), true)
	for si, s := range streams {
		// Identity: byte-exact at every chunking.
		for _, chunk := range []int{1, 2, 3, 7, 64, 1 << 20} {
			got, _ := runSSE(t, s, chunk, func(d []byte) ([]byte, error) { return d, nil })
			if got != s {
				t.Fatalf("stream %d chunk %d identity:\n got %q\nwant %q", si, chunk, got, s)
			}
		}
		// Filtering: same result at every chunking, parsed events as expected.
		ref, _ := runSSE(t, s, 1<<20, tr)
		for _, chunk := range []int{1, 2, 5} {
			if got, _ := runSSE(t, s, chunk, tr); got != ref {
				t.Fatalf("stream %d chunk %d: %q != %q", si, chunk, got, ref)
			}
		}
		evs := parseSSE(ref)
		var found bool
		for _, e := range evs {
			if strings.Contains(e, `"tools"`) {
				found = true
				_, data, _ := strings.Cut(e, "|data=")
				if i := strings.Index(e, "data="); i >= 0 {
					data = e[i+5:]
				}
				var v struct {
					Result struct {
						Tools []struct {
							Name string `json:"name"`
						} `json:"tools"`
						CacheScope string `json:"cacheScope"`
					} `json:"result"`
				}
				if err := json.Unmarshal([]byte(data), &v); err != nil {
					t.Fatalf("stream %d: %v in %q", si, err, data)
				}
				if len(v.Result.Tools) != 1 || v.Result.Tools[0].Name != "b" || v.Result.CacheScope != "private" {
					t.Fatalf("stream %d: %+v", si, v)
				}
			}
		}
		if !found {
			t.Fatalf("stream %d: no tools event in %q", si, ref)
		}
		// Other fields preserved in order.
		want := parseSSE(s)
		if len(evs) != len(want) {
			t.Fatalf("stream %d: %d events, want %d", si, len(evs), len(want))
		}
		for i := range evs {
			pre := func(e string) string { return e[:strings.Index(e, "data=")] }
			if pre(evs[i]) != pre(want[i]) {
				t.Errorf("stream %d event %d fields %q, want %q", si, i, pre(evs[i]), pre(want[i]))
			}
		}
	}
}

func TestSSEFlushPerEvent(t *testing.T) {
	var out bytes.Buffer
	flushes := 0
	f := NewSSEFilter(&out, func() { flushes++ }, func(d []byte) ([]byte, error) { return d, nil })
	f.Write([]byte("data: 1\n\ndata: 2\n"))
	if out.String() != "data: 1\n\n" || flushes != 1 {
		t.Fatalf("%q %d", out.String(), flushes)
	}
	f.Write([]byte("\n"))
	if out.String() != "data: 1\n\ndata: 2\n\n" || flushes != 2 {
		t.Fatalf("%q %d", out.String(), flushes)
	}
	// CR at the end of a write: event dispatched at once, LF passed on.
	f.Write([]byte("data: 3\r\n\r"))
	if !strings.HasSuffix(out.String(), "data: 3\r\n\r") || flushes != 3 {
		t.Fatalf("%q %d", out.String(), flushes)
	}
	f.Write([]byte("\ndata: 4\r\n\r\n"))
	if !strings.HasSuffix(out.String(), "data: 3\r\n\r\ndata: 4\r\n\r\n") || flushes != 4 {
		t.Fatalf("%q %d", out.String(), flushes)
	}
}

func TestSSETransformError(t *testing.T) {
	var out bytes.Buffer
	f := NewSSEFilter(&out, nil, ToolsListTransform([]json.RawMessage{json.RawMessage(`1`)}, allowNames(), false))
	if _, err := f.Write([]byte("data: {\"id\":1,\"result\":{\"tools\":[],\"tools\":[{\"name\":\"x\"}]}}\n\n")); !errors.Is(err, ErrBadToolsList) {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Fatal(out.String())
	}
	if _, err := f.Write([]byte("data: x\n\n")); err == nil {
		t.Fatal("write after error")
	}
	// Non-matching ids and non-JSON pass.
	out.Reset()
	f = NewSSEFilter(&out, nil, ToolsListTransform([]json.RawMessage{json.RawMessage(`"a"`)}, allowNames(), true))
	s := "data: {\"id\":1,\"result\":{\"tools\":[{\"name\":\"x\"}]}}\n\ndata: not json\n\n"
	f.Write([]byte(s))
	if out.String() != s {
		t.Fatal(out.String())
	}
	out.Reset()
	f.Write([]byte("data: {\"id\":\"\\u0061\",\"result\":{\"tools\":[{\"name\":\"x\"}]}}\n\n"))
	if out.String() != "data: {\"id\":\"\\u0061\",\"result\":{\"tools\":[],\"cacheScope\":\"private\"}}\n\n" {
		t.Fatal(out.String())
	}
}

func TestSSEEventTooLarge(t *testing.T) {
	f := NewSSEFilter(io.Discard, nil, nil)
	f.MaxEvent = 10
	if _, err := f.Write([]byte("data: 0123456789")); !errors.Is(err, ErrEventTooLarge) {
		t.Fatal(err)
	}
}

func TestSameID(t *testing.T) {
	for _, c := range []struct {
		a, b string
		eq   bool
	}{{`1`, `1`, true}, {`1`, `1.0`, true}, {`1`, `"1"`, false}, {`"a"`, `"\u0061"`, true}, {`null`, `null`, true}, {``, ``, false}, {`2`, `3`, false}} {
		if SameID([]byte(c.a), []byte(c.b)) != c.eq {
			t.Errorf("SameID(%s,%s)", c.a, c.b)
		}
	}
}

func TestReadBodySized(t *testing.T) {
	body := strings.Repeat("x", 100)
	for _, size := range []int64{-1, 0, 50, 100, 150} {
		got, err := ReadBodySized(strings.NewReader(body), 1000, size)
		if err != nil || string(got) != body {
			t.Errorf("size %d: %v %d bytes", size, err, len(got))
		}
	}
	if _, err := ReadBodySized(strings.NewReader(body), 99, 100); !errors.Is(err, ErrTooLarge) {
		t.Errorf("announced over the limit: %v", err)
	}
	if _, err := ReadBodySized(strings.NewReader(body), 99, 10); !errors.Is(err, ErrTooLarge) {
		t.Errorf("longer than announced and over the limit: %v", err)
	}
	// A client that sends fewer bytes than it announced (Go's HTTP server
	// then reports io.ErrUnexpectedEOF) gets an error, not a shorter body
	// that might still be valid JSON.
	truncated := io.MultiReader(strings.NewReader(`{"jsonrpc":"2.0","method":"notifications/initialized"}`),
		iotest.ErrReader(io.ErrUnexpectedEOF))
	if got, err := ReadBodySized(truncated, 1000, 94); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated body: %q, %v; want io.ErrUnexpectedEOF", got, err)
	}
	// Announcing a large body reserves no more than exactReadMax before the
	// bytes arrive; the body read is still whole.
	big := strings.Repeat("y", exactReadMax*3)
	for _, size := range []int64{exactReadMax, exactReadMax + 1, int64(len(big)), 4 << 20} {
		got, err := ReadBodySized(strings.NewReader(big), 4<<20, size)
		if err != nil || string(got) != big {
			t.Errorf("size %d: %v %d bytes", size, err, len(got))
		}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _ = ReadBodySized(strings.NewReader("{}"), 4<<20, 4<<20)
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("announcing 4 MiB and sending 2 bytes allocated %d bytes", got)
	}
}
