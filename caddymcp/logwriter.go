package caddymcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"
	"go.uber.org/zap/zapcore"
)

func init() {
	caddy.RegisterModule(BufferedWriter{})
}

// Defaults and bounds of the buffered log writer.
const (
	defaultLogBufferSize    = 256 << 10
	defaultLogFlushInterval = time.Second
	minLogFlushInterval     = 10 * time.Millisecond // a shorter ticker is a busy loop
)

// BufferedWriter is a Caddy log writer that collects entries in memory and
// hands them to another writer in one write when the buffer is full, every
// flush_interval, and when the process exits (`caddy stop`, SIGINT,
// SIGTERM). It exists for the audit log (`mcp.audit`, one entry
// per decision): unbuffered, every entry is a write system call, which
// at thousands of requests per second costs more than encoding it. The
// price is that a crash (not a stop or reload) loses at most
// flush_interval worth of entries.
//
// It opens the wrapped writer itself (Caddy's writer pool only sees the
// mcp_buffered writer), so it should not share a file with another log.
//
//	log audit {
//		include mcp.audit
//		output mcp_buffered {
//			output file /var/log/caddy/mcp-audit.log
//			size 256KiB
//			flush_interval 1s
//		}
//	}
type BufferedWriter struct {
	// The writer entries are flushed to (any Caddy log writer); stderr by
	// default.
	OutputRaw json.RawMessage `json:"writer,omitempty" caddy:"namespace=caddy.logging.writers inline_key=output"`
	// Buffer size in bytes; a write that would overflow it flushes first.
	// Default 256 KiB.
	Size int `json:"size,omitempty"`
	// Longest time an entry waits in the buffer. Default 1s.
	FlushInterval caddy.Duration `json:"flush_interval,omitempty"`

	out caddy.WriterOpener
}

// CaddyModule returns the Caddy module information.
func (BufferedWriter) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.writers.mcp_buffered",
		New: func() caddy.Module { return new(BufferedWriter) },
	}
}

// Provision loads the wrapped writer and checks the settings.
func (b *BufferedWriter) Provision(ctx caddy.Context) error {
	if b.Size < 0 {
		return fmt.Errorf("mcp_buffered: size must not be negative")
	}
	if b.FlushInterval < 0 || b.FlushInterval > 0 && time.Duration(b.FlushInterval) < minLogFlushInterval {
		return fmt.Errorf("mcp_buffered: flush_interval must be at least %s", minLogFlushInterval)
	}
	if b.Size == 0 {
		b.Size = defaultLogBufferSize
	}
	if b.FlushInterval == 0 {
		b.FlushInterval = caddy.Duration(defaultLogFlushInterval)
	}
	if len(b.OutputRaw) == 0 {
		b.out = caddy.StderrWriter{}
		return nil
	}
	mod, err := ctx.LoadModule(b, "OutputRaw")
	if err != nil {
		return fmt.Errorf("mcp_buffered: loading its output: %v", err)
	}
	wo, ok := mod.(caddy.WriterOpener)
	if !ok {
		return fmt.Errorf("mcp_buffered: output module %T is not a log writer", mod)
	}
	if _, nested := wo.(*BufferedWriter); nested {
		return errors.New("mcp_buffered: output is itself mcp_buffered")
	}
	b.out = wo
	return nil
}

func (b *BufferedWriter) String() string {
	return fmt.Sprintf("buffered (%d bytes, %s) %s", b.Size, time.Duration(b.FlushInterval), b.out)
}

// WriterKey identifies the writer so that Caddy shares one open writer
// across config reloads that keep the same log output.
func (b *BufferedWriter) WriterKey() string {
	return fmt.Sprintf("mcp_buffered:%d:%d:%s", b.Size, b.FlushInterval, b.out.WriterKey())
}

// OpenWriter opens the wrapped writer behind a buffer.
func (b *BufferedWriter) OpenWriter() (io.WriteCloser, error) {
	w, err := b.out.OpenWriter()
	if err != nil {
		return nil, err
	}
	l := &bufferedLog{
		bws: &zapcore.BufferedWriteSyncer{WS: zapcore.AddSync(w), Size: b.Size, FlushInterval: time.Duration(b.FlushInterval)},
		out: w,
	}
	openBuffered.Lock()
	openBuffered.logs[l] = struct{}{}
	openBuffered.Unlock()
	openBuffered.onExit.Do(func() { caddy.OnExit(flushBufferedLogs) })
	return l, nil
}

// openBuffered lists the open buffered logs so that the process flushes
// them on its way out. Caddy 2.11 does not close log writers when a config
// is unloaded (the cleanup its logging registers is never run), so Close
// alone would not be reached on `caddy stop` or SIGTERM; a writer left
// behind by a reload that changed the log keeps flushing on its interval.
var openBuffered = struct {
	sync.Mutex
	logs   map[*bufferedLog]struct{}
	onExit sync.Once
}{logs: map[*bufferedLog]struct{}{}}

func flushBufferedLogs(context.Context) {
	openBuffered.Lock()
	defer openBuffered.Unlock()
	for l := range openBuffered.logs {
		_ = l.bws.Sync()
	}
}

// bufferedLog flushes and closes the wrapped writer on Close.
type bufferedLog struct {
	bws *zapcore.BufferedWriteSyncer
	out io.WriteCloser
}

func (l *bufferedLog) Write(p []byte) (int, error) { return l.bws.Write(p) }

// Sync flushes the buffer. (Caddy wraps the writers it opens in a type
// without Sync, so zap does not reach it; the process-exit flush does.)
func (l *bufferedLog) Sync() error { return l.bws.Sync() }

func (l *bufferedLog) Close() error {
	openBuffered.Lock()
	delete(openBuffered.logs, l)
	openBuffered.Unlock()
	return errors.Join(l.bws.Stop(), l.out.Close())
}

// UnmarshalCaddyfile sets up the writer from Caddyfile tokens:
//
//	output mcp_buffered {
//		output <writer> [<args...>] [{ ... }]
//		size <bytes, e.g. 256KiB>
//		flush_interval <duration>
//	}
func (b *BufferedWriter) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the writer's name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "output":
			if b.OutputRaw != nil {
				return d.Err("output given twice")
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			name := d.Val()
			var wo caddy.WriterOpener
			switch name {
			case "stdout":
				wo = caddy.StdoutWriter{}
			case "stderr":
				wo = caddy.StderrWriter{}
			case "discard":
				wo = caddy.DiscardWriter{}
			case "mcp_buffered":
				return d.Err("mcp_buffered cannot wrap itself")
			default:
				unm, err := caddyfile.UnmarshalModule(d, "caddy.logging.writers."+name)
				if err != nil {
					return err
				}
				var ok bool
				if wo, ok = unm.(caddy.WriterOpener); !ok {
					return d.Errf("module %s (%T) is not a log writer", name, unm)
				}
			}
			b.OutputRaw = caddyconfig.JSONModuleObject(wo, "output", name, nil)
		case "size":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := humanize.ParseBytes(d.Val())
			if err != nil || n == 0 || n > 1<<30 {
				return d.Errf("size %q: want a size such as 256KiB (up to 1GiB)", d.Val())
			}
			b.Size = int(n)
			if d.NextArg() {
				return d.ArgErr()
			}
		case "flush_interval":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur < minLogFlushInterval {
				return d.Errf("flush_interval %q: want a duration of at least %s", d.Val(), minLogFlushInterval)
			}
			b.FlushInterval = caddy.Duration(dur)
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("unknown subdirective %q (want output, size or flush_interval)", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner     = (*BufferedWriter)(nil)
	_ caddy.WriterOpener    = (*BufferedWriter)(nil)
	_ caddyfile.Unmarshaler = (*BufferedWriter)(nil)
)
