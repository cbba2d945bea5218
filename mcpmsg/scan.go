package mcpmsg

import (
	"encoding/json"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of arrays and objects Inspect accepts.
const MaxDepth = 64

// scanner is a minimal, allocation-free JSON validator/walker over a byte
// slice. It accepts exactly RFC 8259 JSON (the caller checks UTF-8
// validity of the whole input once).
type scanner struct {
	b   []byte
	pos int
	err error // syntax (or depth) error: stops scanning
	// soft is the first semantic error (duplicate key, bad JSON-RPC shape);
	// scanning continues so that a syntax error later in the body still
	// wins (invalid JSON is always -32700).
	soft error
}

func (s *scanner) softFail(kind error, off int, msg string) {
	if s.soft == nil {
		s.soft = &Error{Kind: kind, Offset: off, Msg: msg}
	}
}

func (s *scanner) fail(kind error, msg string) {
	if s.err == nil {
		s.err = &Error{Kind: kind, Offset: s.pos, Msg: msg}
	}
}

func (s *scanner) ws() {
	for s.pos < len(s.b) {
		switch s.b[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.pos >= len(s.b) {
		return 0
	}
	return s.b[s.pos]
}

func (s *scanner) expect(c byte) bool {
	if s.peek() != c {
		s.fail(ErrInvalidJSON, "expected '"+string(c)+"'")
		return false
	}
	s.pos++
	return true
}

// str scans a string starting at s.pos (which must be '"') and returns the
// raw token bounds (quotes included) and whether it contains escapes.
func (s *scanner) str() (start, end int, esc bool) {
	start = s.pos
	if s.pos >= len(s.b) || s.b[s.pos] != '"' {
		s.fail(ErrInvalidJSON, "expected string")
		return
	}
	i := s.pos + 1
	for i < len(s.b) {
		c := s.b[i]
		switch {
		case c == '"':
			s.pos = i + 1
			return start, s.pos, esc
		case c == '\\':
			esc = true
			if i+1 >= len(s.b) {
				s.pos = i
				s.fail(ErrInvalidJSON, "unterminated escape")
				return
			}
			switch s.b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(s.b) || !isHex(s.b[i+2]) || !isHex(s.b[i+3]) || !isHex(s.b[i+4]) || !isHex(s.b[i+5]) {
					s.pos = i
					s.fail(ErrInvalidJSON, "bad \\u escape")
					return
				}
				i += 6
			default:
				s.pos = i
				s.fail(ErrInvalidJSON, "bad escape")
				return
			}
		case c < 0x20:
			s.pos = i
			s.fail(ErrInvalidJSON, "control character in string")
			return
		default:
			i++
		}
	}
	s.pos = i
	s.fail(ErrInvalidJSON, "unterminated string")
	return
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func (s *scanner) number() {
	b, i := s.b, s.pos
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	default:
		s.pos = i
		s.fail(ErrInvalidJSON, "bad number")
		return
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			s.pos = i
			s.fail(ErrInvalidJSON, "bad number")
			return
		}
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			s.pos = i
			s.fail(ErrInvalidJSON, "bad number")
			return
		}
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	}
	s.pos = i
}

func (s *scanner) literal(lit string) {
	if len(s.b)-s.pos < len(lit) || string(s.b[s.pos:s.pos+len(lit)]) != lit {
		s.fail(ErrInvalidJSON, "bad literal")
		return
	}
	s.pos += len(lit)
}

// value skips one value of any type, validating it. depth is the nesting
// depth of the value's container. It uses no closures so that skipping
// large values (tool arguments) stays cheap.
func (s *scanner) value(depth int) {
	switch c := s.peek(); c {
	case '{':
		if depth+1 > MaxDepth {
			s.fail(ErrTooDeep, "nesting deeper than 64")
			return
		}
		s.pos++
		if s.peek() == '}' {
			s.pos++
			return
		}
		for s.err == nil {
			s.ws()
			s.str()
			if s.err != nil || !s.expect(':') {
				return
			}
			s.value(depth + 1)
			if s.err != nil {
				return
			}
			if !s.afterMember() {
				return
			}
		}
	case '[':
		if depth+1 > MaxDepth {
			s.fail(ErrTooDeep, "nesting deeper than 64")
			return
		}
		s.pos++
		if s.peek() == ']' {
			s.pos++
			return
		}
		for s.err == nil {
			s.value(depth + 1)
			if s.err != nil {
				return
			}
			if !s.afterElement() {
				return
			}
		}
	case '"':
		s.str()
	case 't':
		s.literal("true")
	case 'f':
		s.literal("false")
	case 'n':
		s.literal("null")
	case 0:
		s.fail(ErrInvalidJSON, "unexpected end of input")
	default:
		if c == '-' || ('0' <= c && c <= '9') {
			s.number()
			return
		}
		s.fail(ErrInvalidJSON, "unexpected character")
	}
}

// decodeString returns the Go value of a string token (quotes included).
// Plain tokens are converted directly; tokens with escapes go through
// encoding/json so the result is exactly what an encoding/json-based
// upstream reads (lone surrogates become U+FFFD, and so on).
func decodeString(tok []byte, esc bool) string {
	if !esc {
		return string(tok[1 : len(tok)-1])
	}
	var v string
	if err := json.Unmarshal(tok, &v); err != nil {
		return string(utf8.RuneError)
	}
	return v
}

// members scans the object at s.pos one member at a time: each key is
// checked (duplicates, case variants of the keys in sig: see checkKey) and
// value is called with the key's index in sig (-1 for any other key) and
// s.pos at the member's value, which value must consume. It returns the
// offset of the closing '}' (s.pos is then just past it), or -1 when the
// scan failed (s.err is set).
func (s *scanner) members(sig [][]byte, value func(which int)) int {
	set := keySet{b: s.b}
	s.pos++ // '{'
	if s.peek() == '}' {
		s.pos++
		return s.pos - 1
	}
	for s.err == nil {
		s.ws()
		ks, ke, esc := s.str()
		if s.err != nil || !s.expect(':') {
			return -1
		}
		s.ws()
		value(s.checkKey(&set, ks, ke, esc, sig))
		if s.err != nil {
			return -1
		}
		if !s.afterMember() {
			if s.err != nil {
				return -1
			}
			return s.pos - 1
		}
	}
	return -1
}

// afterElement consumes the ',' or ']' after an array element and reports
// whether another element follows.
func (s *scanner) afterElement() bool { return s.after(']') }

// afterMember consumes the ',' or '}' after an object member and reports
// whether another member follows.
func (s *scanner) afterMember() bool { return s.after('}') }

func (s *scanner) after(closer byte) bool {
	switch s.peek() {
	case ',':
		s.pos++
		return true
	case closer:
		s.pos++
	default:
		s.fail(ErrInvalidJSON, "expected ',' or '"+string(closer)+"'")
	}
	return false
}

// expectEnd refuses anything but white space after the top-level value, a
// NUL byte included (peek reports the end of input as 0): the gateway must
// never forward bytes it did not inspect.
func (s *scanner) expectEnd() {
	if s.err != nil {
		return
	}
	s.ws()
	if s.pos < len(s.b) {
		s.fail(ErrInvalidJSON, "data after the JSON value")
	}
}
