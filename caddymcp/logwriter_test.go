package caddymcp

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestBufferedWriterCaddyfile(t *testing.T) {
	for _, tc := range []struct{ in, err string }{
		{"mcp_buffered", ""},
		{"mcp_buffered {\n output stdout\n size 64KiB\n flush_interval 250ms\n}", ""},
		{"mcp_buffered extra", "wrong argument count"},
		{"mcp_buffered {\n output stdout\n output stderr\n}", "output given twice"},
		{"mcp_buffered {\n output\n}", "wrong argument count"},
		{"mcp_buffered {\n output nosuchwriter\n}", "getting module named 'caddy.logging.writers.nosuchwriter'"},
		{"mcp_buffered {\n size 0\n}", "want a size such as 256KiB"},
		{"mcp_buffered {\n size 2GiB\n}", "want a size such as 256KiB"},
		{"mcp_buffered {\n flush_interval -1s\n}", "want a duration of at least 10ms"},
		{"mcp_buffered {\n flush_interval 1ns\n}", "want a duration of at least 10ms"},
		{"mcp_buffered {\n flush_interval soon\n}", "want a duration of at least 10ms"},
		{"mcp_buffered {\n rotate daily\n}", `unknown subdirective "rotate"`},
	} {
		var b BufferedWriter
		err := b.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.in))
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
		}
	}
}

// memWriter is a WriterOpener whose writes can be inspected.
type memWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	closed bool
}

func (m *memWriter) String() string    { return "mem" }
func (m *memWriter) WriterKey() string { return "mem" }
func (m *memWriter) OpenWriter() (io.WriteCloser, error) {
	return m, nil
}
func (m *memWriter) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes++
	return m.buf.Write(p)
}
func (m *memWriter) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}
func (m *memWriter) snapshot() (string, int, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.buf.String(), m.writes, m.closed
}

// TestBufferedWriterBatches: entries wait in memory until the buffer would
// overflow, the interval passes, or the log is flushed at exit or closed.
func TestBufferedWriterBatches(t *testing.T) {
	out := &memWriter{}
	b := &BufferedWriter{Size: 64, FlushInterval: caddy.Duration(time.Hour), out: out}
	w, err := b.OpenWriter()
	if err != nil {
		t.Fatal(err)
	}
	entry := strings.Repeat("a", 19) + "\n" // 20 bytes
	for i := 0; i < 3; i++ {
		_, _ = w.Write([]byte(entry))
	}
	if got, _, _ := out.snapshot(); got != "" {
		t.Fatalf("written before the buffer filled: %q", got)
	}
	_, _ = w.Write([]byte(entry)) // 80 > 64: the first three go out in one write
	if got, n, _ := out.snapshot(); got != strings.Repeat(entry, 3) || n != 1 {
		t.Fatalf("after overflow: %d writes, %q", n, got)
	}
	flushBufferedLogs(context.Background()) // what caddy.OnExit runs
	if got, _, _ := out.snapshot(); got != strings.Repeat(entry, 4) {
		t.Fatalf("after the exit flush: %q", got)
	}
	_, _ = w.Write([]byte(entry))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _, closed := out.snapshot(); got != strings.Repeat(entry, 5) || !closed {
		t.Fatalf("after close: closed=%v %q", closed, got)
	}
	openBuffered.Lock()
	_, still := openBuffered.logs[w.(*bufferedLog)]
	openBuffered.Unlock()
	if still {
		t.Error("a closed log is still flushed at exit")
	}

	// The interval alone moves entries out.
	out2 := &memWriter{}
	b2 := &BufferedWriter{Size: 1 << 20, FlushInterval: caddy.Duration(20 * time.Millisecond), out: out2}
	w2, _ := b2.OpenWriter()
	defer w2.Close()
	_, _ = w2.Write([]byte(entry))
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got, _, _ := out2.snapshot(); got == entry {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the entry was not flushed within 5s at a 20ms interval")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
