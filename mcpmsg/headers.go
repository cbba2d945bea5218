package mcpmsg

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// ErrHeaderMismatch is the kind of every CheckHeaders failure (HTTP 400,
// JSON-RPC CodeHeaderMismatch -32020).
var ErrHeaderMismatch = errors.New("header mismatch")

// HeaderError is a CheckHeaders failure.
type HeaderError struct {
	Header string // "Mcp-Method" or "Mcp-Name"
	Msg    string
}

func (e *HeaderError) Error() string { return e.Header + ": " + e.Msg }
func (e *HeaderError) Unwrap() error { return ErrHeaderMismatch }

// NameMethods are the methods whose target the Mcp-Name header mirrors, and
// the params member it mirrors.
var NameMethods = map[string]string{
	"tools/call":     "name",
	"prompts/get":    "name",
	"resources/read": "uri",
}

// CheckHeaders checks the MCP 2026-07-28 standard request headers (SEP-2243)
// against an inspected body. An empty header value means the header is
// absent. Rules:
//
//   - requests and notifications: Mcp-Method is required and must equal the
//     body's method exactly;
//   - tools/call and prompts/get: Mcp-Name is required and must equal
//     params.name; resources/read: Mcp-Name must equal params.uri;
//   - Mcp-Name values of the form =?base64?B64?= are decoded (standard
//     alphabet, padding optional) before comparing; a malformed one is a
//     mismatch;
//   - responses (no method) must not carry Mcp-Method;
//   - Mcp-Name on other methods is not compared (they have no target);
//   - a batch is always refused (2026-07-28 has no batches).
//
// Call it only when the request's protocol revision is 2026-07-28 or later;
// earlier revisions do not define these headers.
func CheckHeaders(msg *Message, mcpMethodHeader, mcpNameHeader string) error {
	if msg == nil || msg.Kind == KindBatch {
		return &HeaderError{Header: "Mcp-Method", Msg: "batches are not allowed"}
	}
	if msg.Kind == KindResponse {
		if mcpMethodHeader != "" {
			return &HeaderError{Header: "Mcp-Method", Msg: "present on a response"}
		}
		return nil
	}
	if mcpMethodHeader == "" {
		return &HeaderError{Header: "Mcp-Method", Msg: "missing"}
	}
	if mcpMethodHeader != msg.Method {
		return &HeaderError{Header: "Mcp-Method", Msg: fmt.Sprintf("%q does not match the body's method %q", mcpMethodHeader, msg.Method)}
	}
	field, ok := NameMethods[msg.Method]
	if !ok {
		return nil
	}
	want := msg.Name
	if field == "uri" {
		want = msg.URI
	}
	if mcpNameHeader == "" {
		return &HeaderError{Header: "Mcp-Name", Msg: "missing"}
	}
	got, err := DecodeHeaderValue(mcpNameHeader)
	if err != nil {
		return &HeaderError{Header: "Mcp-Name", Msg: err.Error()}
	}
	if got != want {
		return &HeaderError{Header: "Mcp-Name", Msg: fmt.Sprintf("%q does not match the body's params.%s %q", got, field, want)}
	}
	return nil
}

// DecodeHeaderValue decodes an Mcp-Name / Mcp-Param-* value: a value
// wrapped as =?base64?...?= is Base64 (standard alphabet) of UTF-8 bytes;
// anything else is taken literally.
func DecodeHeaderValue(v string) (string, error) {
	const pre, suf = "=?base64?", "?="
	if !strings.HasPrefix(v, pre) || !strings.HasSuffix(v, suf) || len(v) < len(pre)+len(suf) {
		return v, nil
	}
	enc := v[len(pre) : len(v)-len(suf)]
	b, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		b, err = base64.RawStdEncoding.DecodeString(enc)
	}
	if err != nil {
		return "", fmt.Errorf("malformed base64 value")
	}
	return string(b), nil
}
