package mcpmsg

import (
	"bytes"
	"encoding/json"
	"errors"
	"sort"
)

// ErrBadToolsList is returned when a tools/list response cannot be
// filtered safely (invalid JSON, duplicate or case-variant result / tools /
// cacheScope keys, tools not an array). The caller must not pass the
// unfiltered response on (answer 502 instead).
var ErrBadToolsList = errors.New("cannot filter tools/list response")

var (
	resultKeys = [][]byte{[]byte("tools"), []byte("cacheScope")}
	toolKeys   = [][]byte{[]byte("name")}
)

type edit struct {
	start, end int
	repl       []byte
}

// FilterToolsList filters a JSON-RPC tools/list response (a response object,
// or a JSON array of responses where every element with result.tools is
// filtered): it removes every tool whose name allow refuses, and when
// markPrivate is set sets result.cacheScope to "private" (2026-07-28: no
// shared cache may serve one agent's list to another).
//
// Everything else (id, nextCursor, _meta, ttlMs, other tool fields,
// whitespace) is kept byte-exact; only the tools array is rewritten (and
// only if a tool was removed). A tool whose name is missing, not a string,
// or given twice is removed (fail closed). An error response, or a result
// without tools, is returned unchanged. When nothing changes the input
// slice itself is returned.
func FilterToolsList(resp []byte, allow func(name string) bool, markPrivate bool) ([]byte, error) {
	return filterToolsList(resp, nil, false, allow, markPrivate)
}

// ToolsListTransform returns a transform for NewSSEFilter that filters (as
// FilterToolsList does) the data of events carrying the response whose
// JSON-RPC id equals one of ids (compared as JSON values: 1 == 1.0,
// "a" == "\u0061"); other events, including non-JSON data, pass unchanged.
func ToolsListTransform(ids []json.RawMessage, allow func(name string) bool, markPrivate bool) func(data []byte) ([]byte, error) {
	return func(data []byte) ([]byte, error) {
		t := bytes.TrimLeft(data, " \t\r\n")
		if len(t) == 0 || (t[0] != '{' && t[0] != '[') || !json.Valid(data) {
			return data, nil
		}
		return filterToolsList(data, ids, true, allow, markPrivate)
	}
}

func filterToolsList(b []byte, ids []json.RawMessage, byID bool, allow func(string) bool, mark bool) ([]byte, error) {
	s := &scanner{b: b}
	var edits []edit
	switch s.peek() {
	case '{':
		s.response(ids, byID, allow, mark, &edits)
	case '[':
		s.pos++
		if s.peek() == ']' {
			s.pos++
			break
		}
		for s.err == nil {
			if s.peek() == '{' {
				s.response(ids, byID, allow, mark, &edits)
			} else {
				s.value(1)
			}
			if s.err != nil {
				break
			}
			if s.afterElement() {
				continue
			}
			break
		}
	default:
		s.value(0)
		if s.err == nil {
			return b, nil // not a response
		}
	}
	s.expectEnd()
	if s.err != nil {
		return nil, errors.Join(ErrBadToolsList, s.err)
	}
	if s.soft != nil {
		return nil, errors.Join(ErrBadToolsList, s.soft)
	}
	if len(edits) == 0 {
		return b, nil
	}
	sort.Slice(edits, func(i, j int) bool { return edits[i].start < edits[j].start })
	out := make([]byte, 0, len(b)+32)
	last := 0
	for _, e := range edits {
		out = append(out, b[last:e.start]...)
		out = append(out, e.repl...)
		last = e.end
	}
	return append(out, b[last:]...), nil
}

// response scans a response object, then computes the edits of its result.
func (s *scanner) response(ids []json.RawMessage, byID bool, allow func(string) bool, mark bool, edits *[]edit) {
	resultAt, idStart, idEnd := -1, -1, -1
	s.members(topKeys, func(which int) {
		switch which {
		case 1: // id
			idStart = s.pos
			s.value(1)
			idEnd = s.pos
		case 4: // result
			if s.peek() == '{' {
				resultAt = s.pos
			}
			s.value(1)
		default:
			s.value(1)
		}
	})
	if s.err != nil || s.soft != nil || resultAt < 0 {
		return
	}
	if byID {
		if idStart < 0 || !idIn(s.b[idStart:idEnd], ids) {
			return
		}
	}
	end := s.pos
	s.pos = resultAt
	s.result(allow, mark, edits)
	s.pos = end
}

func idIn(id []byte, ids []json.RawMessage) bool {
	for _, want := range ids {
		if SameID(id, want) {
			return true
		}
	}
	return false
}

// SameID reports whether two raw JSON-RPC ids denote the same value
// (strings compared after unescaping, numbers by value).
func SameID(a, b []byte) bool {
	a, b = bytes.TrimSpace(a), bytes.TrimSpace(b)
	if bytes.Equal(a, b) {
		return len(a) > 0
	}
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	var va, vb any
	da, db := json.NewDecoder(bytes.NewReader(a)), json.NewDecoder(bytes.NewReader(b))
	da.UseNumber()
	db.UseNumber()
	if da.Decode(&va) != nil || db.Decode(&vb) != nil {
		return false
	}
	switch x := va.(type) {
	case string:
		y, ok := vb.(string)
		return ok && x == y
	case json.Number:
		y, ok := vb.(json.Number)
		if !ok {
			return false
		}
		fx, e1 := x.Float64()
		fy, e2 := y.Float64()
		return e1 == nil && e2 == nil && fx == fy
	}
	return false
}

var private = []byte(`"private"`)

// result scans result (an object at s.pos) and appends edits.
func (s *scanner) result(allow func(string) bool, mark bool, edits *[]edit) {
	toolsStart, toolsEnd := -1, -1
	csStart, csEnd := -1, -1
	var kept [][2]int
	removed := false
	closeAt := s.members(resultKeys, func(which int) {
		switch which {
		case 0: // tools
			if s.peek() != '[' {
				s.softFail(ErrBadToolsList, s.pos, "tools is not an array")
				s.value(2)
				break
			}
			toolsStart = s.pos
			kept, removed = s.tools(allow)
			toolsEnd = s.pos
		case 1: // cacheScope
			csStart = s.pos
			s.value(2)
			csEnd = s.pos
		default:
			s.value(2)
		}
	})
	if closeAt < 0 {
		return
	}
	if toolsStart < 0 || s.soft != nil {
		return
	}
	if removed {
		var nb []byte
		nb = append(nb, '[')
		for i, k := range kept {
			if i > 0 {
				nb = append(nb, ',')
			}
			nb = append(nb, s.b[k[0]:k[1]]...)
		}
		nb = append(nb, ']')
		*edits = append(*edits, edit{toolsStart, toolsEnd, nb})
	}
	if mark {
		if csStart >= 0 {
			if !bytes.Equal(s.b[csStart:csEnd], private) {
				*edits = append(*edits, edit{csStart, csEnd, private})
			}
		} else {
			*edits = append(*edits, edit{closeAt, closeAt, []byte(`,"cacheScope":"private"`)})
		}
	}
}

// tools scans the tools array and returns the spans of the tools to keep
// and whether any was removed.
func (s *scanner) tools(allow func(string) bool) (kept [][2]int, removed bool) {
	s.pos++
	if s.peek() == ']' {
		s.pos++
		return nil, false
	}
	for s.err == nil {
		s.ws()
		start := s.pos
		keep := false
		if s.peek() == '{' {
			name, ok := s.toolName()
			keep = ok && allow(name)
		} else {
			s.value(3)
		}
		if s.err != nil {
			return
		}
		if keep {
			kept = append(kept, [2]int{start, s.pos})
		} else {
			removed = true
		}
		if s.afterElement() {
			continue
		}
		return
	}
	return
}

// toolName scans one tool object and returns its name; ok is false when
// the name is missing, not a string, duplicated or ambiguous.
func (s *scanner) toolName() (name string, ok bool) {
	saved := s.soft
	s.soft = nil
	defer func() {
		if s.soft != nil {
			ok = false
		}
		s.soft = saved
	}()
	if s.members(toolKeys, func(which int) {
		if which == 0 && s.peek() == '"' {
			a, b, e := s.str()
			if s.err == nil {
				name, ok = decodeString(s.b[a:b], e), true
			}
		} else {
			s.value(4)
		}
	}) < 0 {
		return "", false
	}
	return name, ok
}
