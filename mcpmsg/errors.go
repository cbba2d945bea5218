package mcpmsg

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// JSON-RPC error codes used by the gateway.
const (
	CodeParseError     = -32700 // invalid JSON (HTTP 400)
	CodeInvalidRequest = -32600 // not a valid JSON-RPC message / batch refused (HTTP 400)
	CodeInvalidParams  = -32602 // used for denied tools: "Unknown tool: NAME" (SPEC)
	CodeInternalError  = -32603

	// Gateway-invented codes stay in -32000..-32019.
	CodeGatewayError      = -32000 // upstream unavailable / bad gateway (HTTP 502)
	CodeConnectionError   = -32001 // a tenant connection's token could not be obtained (HTTP 502)
	CodeSessionNotFound   = -32002 // unknown, foreign or expired session (HTTP 404)
	CodeForbiddenByPolicy = -32010 // method denied by policy (SPEC)
	CodeHeaderMismatch    = -32020 // Mcp-Method / Mcp-Name disagree with the body (SPEC; MCP 2026-07-28)
)

// Messages of the SPEC-fixed errors.
const (
	MsgForbidden = "Forbidden by policy"
)

// ErrorData is the `data` of a policy error: why, which policy, and the
// decision id that is also in the audit entry.
type ErrorData struct {
	Reason     string `json:"reason,omitempty"`
	Policy     string `json:"policy,omitempty"`
	DecisionID string `json:"decision_id,omitempty"`
}

// ErrorResponse builds a JSON-RPC error response body:
//
//	{"jsonrpc":"2.0","id":ID,"error":{"code":CODE,"message":MSG,"data":DATA}}
//
// id is echoed byte-exact (a nil or empty id is written as null); data is
// omitted when nil, and otherwise marshalled with encoding/json (a value
// that cannot be marshalled is dropped).
func ErrorResponse(id json.RawMessage, code int, message string, data any) []byte {
	var b bytes.Buffer
	b.Grow(96 + len(id) + len(message))
	b.WriteString(`{"jsonrpc":"2.0","id":`)
	if len(bytes.TrimSpace(id)) == 0 {
		b.WriteString("null")
	} else {
		b.Write(id)
	}
	b.WriteString(`,"error":{"code":`)
	b.WriteString(strconv.Itoa(code))
	b.WriteString(`,"message":`)
	writeJSONString(&b, message)
	if data != nil {
		if d, err := json.Marshal(data); err == nil {
			b.WriteString(`,"data":`)
			b.Write(d)
		}
	}
	b.WriteString("}}")
	return b.Bytes()
}

// DeniedToolResponse is the SPEC's answer to a tools/call policy denial
// (HTTP 200): -32602 "Unknown tool: NAME", so that a denied tool looks
// exactly like one that does not exist.
func DeniedToolResponse(id json.RawMessage, tool string, data *ErrorData) []byte {
	return ErrorResponse(id, CodeInvalidParams, "Unknown tool: "+tool, dataOrNil(data))
}

// ForbiddenResponse is the answer to any other method denied by policy
// (HTTP 200): -32010 "Forbidden by policy".
func ForbiddenResponse(id json.RawMessage, data *ErrorData) []byte {
	return ErrorResponse(id, CodeForbiddenByPolicy, MsgForbidden, dataOrNil(data))
}

// InspectErrorResponse is the answer (HTTP HTTPStatus(err)) to a body
// Inspect refused: -32700 for invalid JSON, -32600 otherwise; id is null
// (the id of a refused body cannot be trusted). The error text is not
// echoed beyond its kind, so nothing of the body is reflected.
func InspectErrorResponse(err error) []byte {
	msg := "Invalid Request"
	if ErrorCode(err) == CodeParseError {
		msg = "Parse error"
	}
	var reason string
	if e, ok := err.(*Error); ok {
		reason = e.Kind.Error()
	}
	var data any
	if reason != "" {
		data = &ErrorData{Reason: reason}
	}
	return ErrorResponse(nil, ErrorCode(err), msg, data)
}

func dataOrNil(d *ErrorData) any {
	if d == nil {
		return nil
	}
	return d
}

func writeJSONString(b *bytes.Buffer, s string) {
	q, _ := json.Marshal(s) // never fails for a string
	b.Write(q)
}
