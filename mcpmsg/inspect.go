// Package mcpmsg inspects MCP (JSON-RPC 2.0) messages posted to the gateway,
// builds the gateway's JSON-RPC error responses, checks the 2026-07-28
// Mcp-Method / Mcp-Name headers against the body, and filters tools/list
// results (JSON and SSE). It has no Caddy imports.
package mcpmsg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Kind classifies an inspected body.
type Kind uint8

const (
	KindRequest      Kind = iota + 1 // method and id
	KindNotification                 // method, no id
	KindResponse                     // result or error, and id
	KindBatch                        // JSON array; see Message.Batch
)

func (k Kind) String() string {
	switch k {
	case KindRequest:
		return "request"
	case KindNotification:
		return "notification"
	case KindResponse:
		return "response"
	case KindBatch:
		return "batch"
	}
	return "invalid"
}

// MetaProtocolVersion is the params._meta key that carries the protocol
// revision of a 2026-07-28 (stateless) request.
const MetaProtocolVersion = "io.modelcontextprotocol/protocolVersion"

// Message is what the gateway needs to know about one posted JSON-RPC body.
//
// When Kind is KindBatch, only Batch is set: every element must be
// authorized (and batches are only legal under protocol 2025-03-26).
type Message struct {
	Kind Kind
	// ID is the raw id token (a JSON string, number or, for responses,
	// null), byte-exact, for echoing in error responses. It aliases the
	// inspected body. Nil when absent (notifications).
	ID json.RawMessage
	// Method is the JSON-RPC method (requests and notifications).
	Method string
	// Name is params.name and URI params.uri, when they are strings.
	Name    string
	HasName bool
	badName bool // params.name present but not a string
	badURI  bool // params.uri present but not a string
	URI     string
	HasURI  bool
	// ProtocolVersion is params._meta["io.modelcontextprotocol/protocolVersion"]
	// when present (2026-07-28 requests carry it).
	ProtocolVersion string
	// InputResponses is set when params.inputResponses is present and not
	// null: a retried multi-round-trip request (2026-07-28), which must be
	// authorized again like the original.
	InputResponses bool
	// IsError is set for a response carrying "error".
	IsError bool
	// Batch holds the elements of a JSON array body.
	Batch []*Message
}

// Target returns the name a policy rule is matched on: params.uri for
// resources/* methods, params.name otherwise.
func (m *Message) Target() string {
	if m.HasURI && !m.HasName {
		return m.URI
	}
	return m.Name
}

// Error kinds. Every error returned by Inspect and ReadBody is an *Error
// whose Kind is one of these (errors.Is works).
var (
	ErrInvalidJSON    = errors.New("invalid JSON")                       // -32700
	ErrTooDeep        = errors.New("JSON nested too deeply")             // -32600
	ErrDuplicateKey   = errors.New("duplicate or ambiguous key")         // -32600
	ErrNotObject      = errors.New("body is not a JSON object or array") // -32600
	ErrEmptyBatch     = errors.New("empty batch")                        // -32600
	ErrInvalidRequest = errors.New("invalid JSON-RPC message")           // -32600
	ErrTooLarge       = errors.New("body too large")                     // HTTP 413, -32600
)

// Error is an inspection failure.
type Error struct {
	Kind   error
	Offset int // byte offset in the body, where known
	Msg    string
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return e.Kind.Error()
	}
	return fmt.Sprintf("%v: %s (at byte %d)", e.Kind, e.Msg, e.Offset)
}

func (e *Error) Unwrap() error { return e.Kind }

// Code is the JSON-RPC error code to answer with: -32700 (parse error) for
// invalid JSON, -32600 (invalid request) otherwise.
func (e *Error) Code() int { return ErrorCode(e) }

// ErrorCode maps an inspection error to its JSON-RPC code.
func ErrorCode(err error) int {
	if errors.Is(err, ErrInvalidJSON) {
		return CodeParseError
	}
	return CodeInvalidRequest
}

// HTTPStatus is the HTTP status for an inspection error: 413 for
// ErrTooLarge, 400 otherwise.
func HTTPStatus(err error) int {
	if errors.Is(err, ErrTooLarge) {
		return 413
	}
	return 400
}

func invalid(kind error, off int, msg string) *Error {
	return &Error{Kind: kind, Offset: off, Msg: msg}
}

// DefaultBodyLimit is the SPEC's default POST size limit (4 MiB).
const DefaultBodyLimit = 4 << 20

// ReadBody reads all of r, failing with ErrTooLarge (HTTP 413) as soon as
// more than limit bytes arrive. limit <= 0 means DefaultBodyLimit.
func ReadBody(r io.Reader, limit int64) ([]byte, error) {
	return ReadBodySized(r, limit, -1)
}

// exactReadMax is the largest announced size read into one buffer of
// exactly that size, allocated before the bytes arrive.
const exactReadMax = 64 << 10

// ReadBodySized is ReadBody with the expected size (an HTTP request's
// Content-Length, -1 when unknown): a body of up to 64 KiB is read into
// one buffer of that size, which saves the growing copies of a small POST.
// A body that turns out longer or shorter than announced is still read
// whole and capped at limit.
func ReadBodySized(r io.Reader, limit, size int64) ([]byte, error) {
	if limit <= 0 {
		limit = DefaultBodyLimit
	}
	if size > limit {
		return nil, &Error{Kind: ErrTooLarge, Msg: fmt.Sprintf("over %d bytes", limit)}
	}
	if size > 0 && size <= exactReadMax {
		// The usual case: exactly the announced bytes, in one buffer.
		buf := make([]byte, size)
		n := 0
		for n < len(buf) {
			m, err := r.Read(buf[n:])
			n += m
			if err == io.EOF {
				// The reader says the body ended early. (An HTTP/1.1 client
				// that sends fewer bytes than its Content-Length is not
				// this: Go's server reports io.ErrUnexpectedEOF, an error.)
				return buf[:n], nil
			}
			if err != nil {
				return nil, err
			}
		}
		var one [1]byte
		if _, err := io.ReadFull(r, one[:]); err == io.EOF {
			return buf, nil
		} else if err != nil {
			return nil, err
		}
		// Longer than announced: read on, capped, from what we have.
		r = io.MultiReader(bytes.NewReader(buf), bytes.NewReader(one[:]), r)
	}
	var buf bytes.Buffer
	if size > exactReadMax {
		// Large announced bodies grow with what actually arrives, so a
		// client cannot make the gateway reserve 4 MiB by announcing it.
		buf.Grow(exactReadMax)
	}
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, &Error{Kind: ErrTooLarge, Msg: fmt.Sprintf("over %d bytes", limit)}
	}
	return buf.Bytes(), nil
}

// Keys whose case variants are refused: encoding/json matches struct
// fields case-insensitively (with Unicode folding, e.g. "ſ" ~ "s"), so an
// upstream in Go could read {"Method": ...} as the method.
var (
	topKeys    = [][]byte{[]byte("jsonrpc"), []byte("id"), []byte("method"), []byte("params"), []byte("result"), []byte("error")}
	paramsKeys = [][]byte{[]byte("name"), []byte("uri"), []byte("_meta"), []byte("arguments"), []byte("inputResponses")}
	metaKeys   = [][]byte{[]byte(MetaProtocolVersion)}
)

// Inspect parses one POSTed body: a single JSON-RPC message, or a batch
// (JSON array of messages, returned with Kind == KindBatch). It never
// modifies body; the caller forwards the same bytes.
//
// It refuses (with an *Error): invalid UTF-8 or JSON (-32700); anything
// other than an object or array at the top; an empty batch; nesting deeper
// than MaxDepth; any duplicate key in the message object, in params or in
// params._meta (after unescaping, so "method" and "\u006dethod" are the
// same key); a key that differs only in case (Unicode folding) from a
// significant key (jsonrpc, id, method, params, result, error; in params:
// name, uri, _meta, arguments, inputResponses); and messages that are not
// valid JSON-RPC 2.0: jsonrpc must be "2.0"; method a string; id a string
// or number (null only in responses); params an object (or null); a
// request/notification must not carry result/error; a response needs an id
// and exactly one of result and error; for tools/call and prompts/get
// params.name, and for resources/read, resources/subscribe and
// resources/unsubscribe params.uri, must be a string.
//
// So whatever Inspect accepts, every JSON parser reads the same method,
// params.name and params.uri from it as the gateway did.
func Inspect(body []byte) (*Message, error) {
	if !utf8.Valid(body) {
		return nil, invalid(ErrInvalidJSON, 0, "body is not valid UTF-8")
	}
	s := &scanner{b: body}
	var msg *Message
	switch s.peek() {
	case '{':
		msg = &Message{}
		s.message(msg, 0)
	case '[':
		msg = &Message{Kind: KindBatch}
		s.pos++
		if s.peek() == ']' {
			return nil, invalid(ErrEmptyBatch, s.pos, "")
		}
		for s.err == nil {
			if s.peek() != '{' {
				off := s.pos
				s.value(1)
				if s.err != nil {
					break
				}
				s.softFail(ErrNotObject, off, "batch element is not an object")
			} else {
				m := &Message{}
				s.message(m, 1)
				msg.Batch = append(msg.Batch, m)
				if s.err != nil {
					break
				}
			}
			if s.afterElement() {
				continue
			}
			break
		}
	case 0:
		return nil, invalid(ErrInvalidJSON, s.pos, "empty body")
	default:
		s.value(0)
		s.softFail(ErrNotObject, 0, "")
	}
	s.expectEnd()
	if s.err != nil {
		return nil, s.err
	}
	if s.soft != nil {
		return nil, s.soft
	}
	return msg, nil
}

// keySet detects duplicate keys in one object without allocating for up
// to 16 unescaped keys.
type keySet struct {
	b     []byte
	small [16][2]int32
	esc   [16]bool
	n     int
	big   map[string]struct{}
}

// add returns false when the key (raw token b[ks:ke]) was already present.
func (k *keySet) add(ks, ke int, esc bool) bool {
	tok := k.b[ks:ke]
	if k.big != nil {
		key := decodeString(tok, esc)
		if _, dup := k.big[key]; dup {
			return false
		}
		k.big[key] = struct{}{}
		return true
	}
	for i := 0; i < k.n; i++ {
		o := k.b[k.small[i][0]:k.small[i][1]]
		if !esc && !k.esc[i] {
			if bytes.Equal(o, tok) {
				return false
			}
		} else if decodeString(o, k.esc[i]) == decodeString(tok, esc) {
			return false
		}
	}
	if k.n < len(k.small) {
		k.small[k.n] = [2]int32{int32(ks), int32(ke)}
		k.esc[k.n] = esc
		k.n++
		return true
	}
	k.big = make(map[string]struct{}, 32)
	for i := 0; i < k.n; i++ {
		k.big[decodeString(k.b[k.small[i][0]:k.small[i][1]], k.esc[i])] = struct{}{}
	}
	k.big[decodeString(tok, esc)] = struct{}{}
	return true
}

// checkKey refuses duplicates and case variants of significant keys. It
// returns the index in sig of the key when it is exactly significant, or -1.
func (s *scanner) checkKey(set *keySet, ks, ke int, esc bool, sig [][]byte) int {
	if !set.add(ks, ke, esc) {
		s.softFail(ErrDuplicateKey, ks, "duplicate key "+string(s.b[ks:ke]))
		return -1
	}
	name := s.b[ks+1 : ke-1]
	var dec []byte
	if esc {
		dec = []byte(decodeString(s.b[ks:ke], true))
		name = dec
	}
	for i, k := range sig {
		if bytes.Equal(name, k) {
			return i
		}
		if bytes.EqualFold(name, k) {
			s.softFail(ErrDuplicateKey, ks, fmt.Sprintf("key %s is a case variant of %q", s.b[ks:ke], k))
			return -1
		}
	}
	return -1
}

// message parses one JSON-RPC message object at s.pos.
func (s *scanner) message(m *Message, depth int) {
	start := s.pos
	var (
		hasJSONRPC, hasID, hasMethod, hasResult, hasError, hasParams bool
		jsonrpcOK, idNull                                            bool
	)
	s.members(topKeys, func(which int) {
		vs := s.pos
		switch which {
		case 0: // jsonrpc
			hasJSONRPC = true
			if s.peek() == '"' {
				a, b, e := s.str()
				jsonrpcOK = s.err == nil && decodeString(s.b[a:b], e) == "2.0"
			} else {
				s.value(depth + 1)
			}
		case 1: // id
			hasID = true
			switch c := s.peek(); {
			case c == '"':
				s.str()
			case c == 'n':
				s.literal("null")
				idNull = true
			case c == '-' || '0' <= c && c <= '9':
				s.number()
			default:
				s.value(depth + 1)
				s.softFail(ErrInvalidRequest, vs, "id must be a string or number")
			}
			m.ID = json.RawMessage(s.b[vs:s.pos:s.pos])
		case 2: // method
			hasMethod = true
			if s.peek() != '"' {
				s.value(depth + 1)
				s.softFail(ErrInvalidRequest, vs, "method must be a string")
				break
			}
			a, b, e := s.str()
			if s.err == nil {
				m.Method = decodeString(s.b[a:b], e)
			}
		case 3: // params
			switch s.peek() {
			case '{':
				hasParams = true
				s.params(m, depth+1)
			case 'n':
				s.literal("null")
			default:
				s.value(depth + 1)
				s.softFail(ErrInvalidRequest, vs, "params must be an object")
			}
		case 4: // result
			hasResult = true
			s.value(depth + 1)
		case 5: // error
			hasError = true
			s.value(depth + 1)
		default:
			s.value(depth + 1)
		}
	})
	if s.err != nil {
		return
	}
	bad := func(msg string) { s.softFail(ErrInvalidRequest, start, msg) }
	switch {
	case !hasJSONRPC || !jsonrpcOK:
		bad(`jsonrpc must be "2.0"`)
	case hasMethod && (hasResult || hasError):
		bad("a message cannot have both method and result/error")
	case hasMethod:
		if idNull {
			bad("request id must not be null")
			return
		}
		if hasID {
			m.Kind = KindRequest
		} else {
			m.Kind = KindNotification
		}
		// A name or uri that is present must be a string (an upstream that
		// coerced another type could call something the gateway did not
		// authorize). An absent one is left to the upstream to refuse with
		// its own error for this request's id: nothing is targeted, so the
		// request needs only what the `*` rules say.
		switch m.Method {
		case "tools/call", "prompts/get":
			if m.badName {
				bad("params.name must be a string")
			}
		case "resources/read", "resources/subscribe", "resources/unsubscribe":
			if m.badURI {
				bad("params.uri must be a string")
			}
		}
	case hasResult && hasError:
		bad("a response cannot have both result and error")
	case hasResult || hasError:
		if !hasID {
			bad("a response needs an id")
			return
		}
		m.Kind, m.IsError = KindResponse, hasError
		if hasParams {
			bad("a response cannot have params")
		}
	default:
		bad("neither a request, a notification nor a response")
	}
}

// params parses the params object at s.pos.
func (s *scanner) params(m *Message, depth int) {
	if depth+1 > MaxDepth {
		s.fail(ErrTooDeep, "nesting deeper than 64")
		return
	}
	s.members(paramsKeys, func(which int) {
		switch which {
		case 0, 1: // name, uri
			if s.peek() == '"' {
				a, b, e := s.str()
				if s.err == nil {
					v := decodeString(s.b[a:b], e)
					if which == 0 {
						m.Name, m.HasName = v, true
					} else {
						m.URI, m.HasURI = v, true
					}
				}
			} else {
				if which == 0 {
					m.badName = true
				} else {
					m.badURI = true
				}
				s.value(depth + 1)
			}
		case 2: // _meta
			if s.peek() == '{' {
				s.meta(m, depth+1)
			} else {
				s.value(depth + 1)
			}
		case 4: // inputResponses
			m.InputResponses = s.peek() != 'n'
			s.value(depth + 1)
		default:
			s.value(depth + 1)
		}
	})
}

// meta parses params._meta at s.pos.
func (s *scanner) meta(m *Message, depth int) {
	if depth+1 > MaxDepth {
		s.fail(ErrTooDeep, "nesting deeper than 64")
		return
	}
	s.members(metaKeys, func(which int) {
		if which == 0 && s.peek() == '"' {
			a, b, e := s.str()
			if s.err == nil {
				m.ProtocolVersion = decodeString(s.b[a:b], e)
			}
		} else {
			s.value(depth + 1)
		}
	})
}
