package mcpmsg

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// upstreamView is what an encoding/json-based upstream (such as the Go SDK)
// reads. Struct fields match case-insensitively, the last duplicate wins.
type upstreamView struct {
	JSONRPC any             `json:"jsonrpc"`
	Method  any             `json:"method"`
	ID      json.RawMessage `json:"id"`
	Params  *struct {
		Name any            `json:"name"`
		URI  any            `json:"uri"`
		Meta map[string]any `json:"_meta"`
	} `json:"params"`
}

func checkAgainstEncodingJSON(t *testing.T, raw []byte, m *Message) {
	// Both views: a struct (case-insensitive) and a map (exact keys).
	var v upstreamView
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("Inspect accepted what encoding/json refuses: %v\n%q", err, raw)
	}
	var mv map[string]any
	if err := json.Unmarshal(raw, &mv); err != nil {
		t.Fatal(err)
	}
	if m.Kind == KindRequest || m.Kind == KindNotification {
		if s, _ := v.Method.(string); s != m.Method || mv["method"] != m.Method {
			t.Fatalf("method: gateway %q, upstream %v / %v\n%q", m.Method, v.Method, mv["method"], raw)
		}
	} else if v.Method != nil {
		t.Fatalf("response with method %v\n%q", v.Method, raw)
	}
	var name, uri any
	var pv string
	if v.Params != nil {
		name, uri = v.Params.Name, v.Params.URI
		if s, ok := v.Params.Meta[MetaProtocolVersion].(string); ok {
			pv = s
		}
	}
	var mName, mURI any
	if p, ok := mv["params"].(map[string]any); ok {
		mName, mURI = p["name"], p["uri"]
	}
	s, ok := name.(string)
	if ok != m.HasName || s != m.Name || (ok && mName != m.Name) {
		t.Fatalf("name: gateway %q/%v, upstream %v / %v\n%q", m.Name, m.HasName, name, mName, raw)
	}
	s, ok = uri.(string)
	if ok != m.HasURI || s != m.URI || (ok && mURI != m.URI) {
		t.Fatalf("uri: gateway %q/%v, upstream %v / %v\n%q", m.URI, m.HasURI, uri, mURI, raw)
	}
	if pv != m.ProtocolVersion {
		t.Fatalf("protocol version: gateway %q, upstream %q\n%q", m.ProtocolVersion, pv, raw)
	}
	if len(m.ID) > 0 && !bytes.Equal(bytes.TrimSpace(v.ID), m.ID) {
		t.Fatalf("id: gateway %s, upstream %s", m.ID, v.ID)
	}
}

func FuzzInspect(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_invoice","arguments":{}}}`,
		`{"method":"tools/call","params":{"name":"read_invoice","name":"delete_invoice"}}`,
		`{"jsonrpc":"2.0","id":"x","method":"resources/read","params":{"uri":"file:///a","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
		`{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"NAME":"x"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"n\u0061me":"x","ſ":1}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"n"}]`,
		`{"jsonrpc":"2.0","id":1,"result":{"x":[1,2.5e-3,true,false,null]}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\ud800x"}}`,
		`[]`, `{}`, `"x"`, `{"a":`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		orig := bytes.Clone(body)
		m, err := Inspect(body)
		if !bytes.Equal(orig, body) {
			t.Fatal("Inspect modified the body")
		}
		if err != nil {
			// Invalid UTF-8 is refused as a parse error on purpose
			// (encoding/json would silently replace it).
			if json.Valid(body) && utf8.Valid(body) && ErrorCode(err) == CodeParseError {
				t.Fatalf("valid JSON reported as parse error: %v\n%q", err, body)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("Inspect accepted invalid JSON %q", body)
		}
		if m.Kind == KindBatch {
			var elems []json.RawMessage
			if err := json.Unmarshal(body, &elems); err != nil || len(elems) != len(m.Batch) {
				t.Fatalf("batch: %v %d/%d", err, len(elems), len(m.Batch))
			}
			for i := range elems {
				checkAgainstEncodingJSON(t, elems[i], m.Batch[i])
			}
			return
		}
		checkAgainstEncodingJSON(t, body, m)
	})
}

func FuzzSSEFilter(f *testing.F) {
	for _, s := range []string{
		"event: message\nid: 1\ndata: {\"a\":1}\n\n",
		"data: a\r\ndata: b\r\n\r\n: comment\r\n\r\n",
		"data: a\rdata: b\r\rretry: 5\r\r",
		"\uFEFFdata:x\n\ndata\n\n",
		"id: 1\nevent: x\ndata: {\"id\":2,\"result\":{\"tools\":[{\"name\":\"a\"}]}}\n\n",
		"data: partial",
	} {
		f.Add([]byte(s), uint8(1))
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		c := int(chunk)%17 + 1
		run := func(tr func([]byte) ([]byte, error)) string {
			var out bytes.Buffer
			fl := NewSSEFilter(&out, nil, tr)
			b := in
			for len(b) > 0 {
				n := min(c, len(b))
				if _, err := fl.Write(b[:n]); err != nil {
					t.Fatal(err)
				}
				b = b[n:]
			}
			if err := fl.Close(); err != nil {
				t.Fatal(err)
			}
			return out.String()
		}
		// Identity reproduces the stream byte for byte.
		if got := run(func(d []byte) ([]byte, error) { return d, nil }); got != string(in) {
			t.Fatalf("identity:\n got %q\nwant %q", got, in)
		}
		// A changing transform keeps the events and their other fields.
		got := run(func(d []byte) ([]byte, error) { return append(bytes.Clone(d), '!'), nil })
		want := parseSSE(string(in))
		have := parseSSE(got)
		if len(want) != len(have) {
			t.Fatalf("events %d, want %d\nin  %q\nout %q", len(have), len(want), in, got)
		}
		for i := range want {
			w := want[i]
			if j := strings.Index(w, "|data="); j >= 0 && strings.Contains(w, "data=") {
				// parseSSE reports data only for events that had data lines
				// or other fields; an event with data gains a '!'.
				_ = j
			}
			if !strings.HasPrefix(have[i], w[:strings.Index(w, "data=")]) {
				t.Fatalf("event %d fields %q, want %q", i, have[i], w)
			}
		}
		// Filtering tools lists never panics on arbitrary data.
		_, _ = FilterToolsList(in, func(string) bool { return false }, true)
	})
}

func inspectBody(size int) []byte {
	var b strings.Builder
	b.WriteString(`{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"create_invoice","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","progressToken":"p"},"arguments":{"lines":[`)
	for i := 0; b.Len() < size-64; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sku":"SKU-%06d","qty":%d,"price":%d.95,"note":"caf\u00e9 \"x\"","ok":true}`, i, i%7, i%100)
	}
	b.WriteString(`]}}}`)
	return []byte(b.String())
}

func BenchmarkInspect(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		body := inspectBody(size)
		if m, err := Inspect(body); err != nil || m.Name != "create_invoice" || m.ProtocolVersion != "2026-07-28" {
			b.Fatal(m, err)
		}
		b.Run(fmt.Sprintf("size=%dKB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Inspect(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodingJSONValid is the reference point: encoding/json's own
// validator over the same bodies.
func BenchmarkEncodingJSONValid(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		body := inspectBody(size)
		b.Run(fmt.Sprintf("size=%dKB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				json.Valid(body)
			}
		})
	}
}

func BenchmarkFilterToolsList(b *testing.B) {
	var s strings.Builder
	s.WriteString(`{"jsonrpc":"2.0","id":1,"result":{"tools":[`)
	for i := range 200 {
		if i > 0 {
			s.WriteByte(',')
		}
		fmt.Fprintf(&s, `{"name":"tool_%d","description":"does thing %d","inputSchema":{"type":"object","properties":{"a":{"type":"string"}}}}`, i, i)
	}
	s.WriteString(`],"nextCursor":"c"}}`)
	body := []byte(s.String())
	allow := func(n string) bool { return len(n)%2 == 0 }
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := FilterToolsList(body, allow, true); err != nil {
			b.Fatal(err)
		}
	}
}
