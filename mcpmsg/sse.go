package mcpmsg

import (
	"bytes"
	"errors"
	"io"
)

// DefaultMaxEvent is the largest SSE event SSEFilter buffers.
const DefaultMaxEvent = 16 << 20

// ErrEventTooLarge is returned by SSEFilter.Write when one event exceeds
// MaxEvent bytes.
var ErrEventTooLarge = errors.New("SSE event too large")

// SSEFilter is a streaming text/event-stream transformer. Write it the
// upstream's bytes in chunks of any size; it writes each event to dst as
// soon as the blank line ending it arrives, calls flush after each event,
// and never holds more than the current, incomplete event.
//
// For each event with data, transform is called with the event's data (the
// data lines joined with "\n", as an EventSource delivers it). If it returns
// the data unchanged, the event is written byte-exact; otherwise the
// event's data lines are replaced, at the position of the first one, by
// "data: " lines carrying the new data, and every other line (id:, event:,
// retry:, comments, unknown fields) is kept byte-exact and in order, with
// its original line ending. Events without data (comments, keep-alives,
// retry:) pass through byte-exact without calling transform. Line endings
// may be CRLF, LF or CR, also split across writes; a leading UTF-8 BOM is
// kept and ignored for parsing.
//
// An error from transform (or from dst) is returned by Write, and every
// later Write fails: the caller must end the response, since the event
// could not be filtered.
type SSEFilter struct {
	dst       io.Writer
	flush     func()
	transform func(data []byte) ([]byte, error)
	// MaxEvent bounds the buffered event (default DefaultMaxEvent).
	MaxEvent int

	ev        []byte // raw bytes of the current event
	lineStart int    // start in ev of the current line
	// pendingCR: the last byte seen was a CR; an LF right after it belongs
	// to the same line ending. direct: that CR ended an event already
	// written, so the LF goes straight to dst.
	pendingCR, direct bool
	started           bool // first line seen (BOM only on the first)
	bom               bool // the first event starts with a BOM
	err               error
}

// NewSSEFilter returns an SSEFilter writing to dst. flush may be nil.
func NewSSEFilter(dst io.Writer, flush func(), transform func(data []byte) ([]byte, error)) *SSEFilter {
	return &SSEFilter{dst: dst, flush: flush, transform: transform, MaxEvent: DefaultMaxEvent}
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// Write implements io.Writer.
func (f *SSEFilter) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	n := len(p)
	for len(p) > 0 {
		if f.pendingCR {
			f.pendingCR = false
			if p[0] == '\n' {
				p = p[1:]
				if f.direct {
					if err := f.out([]byte{'\n'}); err != nil {
						return 0, err
					}
				} else {
					f.ev = append(f.ev, '\n')
					f.lineStart = len(f.ev)
				}
				continue
			}
		}
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			f.ev = append(f.ev, p...)
			if max := f.max(); len(f.ev) > max {
				f.err = ErrEventTooLarge
				return 0, f.err
			}
			return n, nil
		}
		lineLen := len(f.ev) + i - f.lineStart
		f.ev = append(f.ev, p[:i+1]...)
		term := p[i]
		p = p[i+1:]
		if term == '\r' {
			if len(p) > 0 && p[0] == '\n' {
				f.ev = append(f.ev, '\n')
				p = p[1:]
			} else if len(p) == 0 {
				f.pendingCR = true
			}
		}
		if !f.started {
			f.started = true
			if bytes.HasPrefix(f.ev, utf8BOM) {
				f.bom = true
				lineLen -= len(utf8BOM)
			}
		}
		if lineLen == 0 {
			f.direct = f.pendingCR
			if err := f.dispatch(false); err != nil {
				return 0, err
			}
		} else {
			f.direct = false
			f.lineStart = len(f.ev)
		}
	}
	return n, nil
}

// Close writes an unterminated last event (transformed like any other; an
// EventSource would discard it, but a lenient client might not) and
// flushes. It does not close dst.
func (f *SSEFilter) Close() error {
	if f.err != nil {
		return f.err
	}
	if len(f.ev) > 0 {
		return f.dispatch(true)
	}
	return nil
}

func (f *SSEFilter) max() int {
	if f.MaxEvent > 0 {
		return f.MaxEvent
	}
	return DefaultMaxEvent
}

func (f *SSEFilter) out(b []byte) error {
	if _, err := f.dst.Write(b); err != nil {
		f.err = err
		return err
	}
	return nil
}

// sseLine is one line of an event: content and line ending.
type sseLine struct {
	text, end []byte
}

// splitLines splits raw event bytes into lines (the last one may lack an
// ending when partial).
func splitLines(ev []byte, fn func(l sseLine) bool) {
	for len(ev) > 0 {
		i := bytes.IndexAny(ev, "\r\n")
		if i < 0 {
			fn(sseLine{text: ev})
			return
		}
		j := i + 1
		if ev[i] == '\r' && j < len(ev) && ev[j] == '\n' {
			j++
		}
		if !fn(sseLine{text: ev[:i], end: ev[i:j]}) {
			return
		}
		ev = ev[j:]
	}
}

// field parses a line into field name and value (one leading space of the
// value removed). Comments have name ":".
func field(line []byte) (name, value []byte) {
	if len(line) > 0 && line[0] == ':' {
		return []byte{':'}, nil
	}
	i := bytes.IndexByte(line, ':')
	if i < 0 {
		return line, nil
	}
	name, value = line[:i], line[i+1:]
	if len(value) > 0 && value[0] == ' ' {
		value = value[1:]
	}
	return name, value
}

func (f *SSEFilter) dispatch(partial bool) error {
	ev := f.ev
	f.ev, f.lineStart = f.ev[:0], 0
	bom := f.bom
	f.bom = false
	body := ev
	if bom {
		body = ev[len(utf8BOM):]
	}
	// Collect data.
	var data []byte
	nData := 0
	splitLines(body, func(l sseLine) bool {
		if name, v := field(l.text); string(name) == "data" {
			if nData > 0 {
				data = append(data, '\n')
			}
			data = append(data, v...)
			nData++
		}
		return true
	})
	if nData == 0 || f.transform == nil {
		return f.emit(ev)
	}
	if data == nil {
		data = []byte{}
	}
	nd, err := f.transform(data)
	if err != nil {
		f.err = err
		return err
	}
	if bytes.Equal(nd, data) {
		return f.emit(ev)
	}
	var b bytes.Buffer
	b.Grow(len(ev) + len(nd) - len(data) + 16)
	if bom {
		b.Write(utf8BOM)
	}
	done := false
	splitLines(body, func(l sseLine) bool {
		// A changed event is written with LF line endings throughout:
		// keeping the original ones could put a kept line's CR next to a
		// later LF once data lines are merged, turning two line ends into
		// one CRLF and losing the event's terminating blank line.
		// The blank line that ends the event keeps its own terminator: what
		// follows it is what followed it in the original stream (possibly
		// the LF of a CRLF split across writes).
		if len(l.text) == 0 {
			b.Write(l.end)
			return true
		}
		name, _ := field(l.text)
		if string(name) != "data" {
			b.Write(l.text)
			if len(l.end) > 0 {
				b.WriteByte('\n')
			}
			return true
		}
		if done {
			return true
		}
		done = true
		end := []byte{'\n'}
		rest := nd
		for {
			i := bytes.IndexAny(rest, "\r\n")
			b.WriteString("data: ")
			if i < 0 {
				b.Write(rest)
				b.Write(end)
				break
			}
			b.Write(rest[:i])
			b.Write(end)
			if rest[i] == '\r' && i+1 < len(rest) && rest[i+1] == '\n' {
				i++
			}
			rest = rest[i+1:]
		}
		return true
	})
	_ = partial
	return f.emit(b.Bytes())
}

func (f *SSEFilter) emit(b []byte) error {
	if err := f.out(b); err != nil {
		return err
	}
	if f.flush != nil {
		f.flush()
	}
	return nil
}
