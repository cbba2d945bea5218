package caddymcp

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/caddymcp/gateway/mcpmsg"
)

// respWriter sits between reverse_proxy and the client. It records the
// upstream's status for the audit entry and, when the agent may not call
// every tool, filters tools/list results: a JSON body is filtered whole, an
// SSE stream event by event as it arrives (never buffered beyond the
// current event). Other responses pass straight through.
type respWriter struct {
	http.ResponseWriter
	status int
	// h and x seal the upstream's Mcp-Session-Id in the response headers
	// before they are sent.
	h *Handler
	x *exchange

	// filtering (nil allow: none)
	allow   func(name string) bool
	ids     []json.RawMessage
	private bool

	// detached: the upstream call outlives the client (POST). Once a
	// write to the client fails, the rest of the upstream's response is
	// read and discarded instead of aborting the upstream call (MCP: a
	// disconnect is not a cancellation); detachGrace bounds it.
	detached  bool
	clientErr error

	mode    int // 0 undecided, 1 pass, 2 JSON buffered, 3 SSE
	buf     bytes.Buffer
	sse     *mcpmsg.SSEFilter
	failed  bool
	flusher *http.ResponseController
}

const (
	modePass = iota + 1
	modeJSON
	modeSSE
)

func (w *respWriter) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	if code >= 100 && code < 200 {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.status = code
	if w.h != nil {
		if err := w.h.sealSession(w.Header(), w.x); err != nil {
			w.h.logger.Warn("upstream session id not sealed", zap.String("server", w.x.srv.cfg.Name), zap.Error(err))
		}
	}
	if w.allow == nil || code != http.StatusOK {
		w.mode = modePass
		w.ResponseWriter.WriteHeader(code)
		return
	}
	ct := strings.ToLower(w.Header().Get("Content-Type"))
	switch {
	case strings.HasPrefix(ct, "application/json"):
		w.mode = modeJSON
		w.Header().Del("Content-Length")
		// WriteHeader is deferred until the filtered body is known.
	case strings.HasPrefix(ct, "text/event-stream"):
		w.mode = modeSSE
		w.Header().Del("Content-Length")
		w.ResponseWriter.WriteHeader(code)
		w.sse = mcpmsg.NewSSEFilter(w.ResponseWriter, func() { _ = w.controller().Flush() },
			mcpmsg.ToolsListTransform(w.ids, w.allow, w.private))
	default:
		w.mode = modePass
		w.ResponseWriter.WriteHeader(code)
	}
}

func (w *respWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.clientErr != nil {
		return len(p), nil
	}
	var n int
	var err error
	switch w.mode {
	case modeJSON:
		return w.buf.Write(p)
	case modeSSE:
		n, err = w.sse.Write(p)
	default:
		n, err = w.ResponseWriter.Write(p)
	}
	if err != nil && w.detached {
		w.clientErr = err
		return len(p), nil
	}
	return n, err
}

// Flush implements http.Flusher (reverse_proxy flushes SSE per event).
func (w *respWriter) Flush() {
	if w.mode == modeJSON || w.clientErr != nil {
		return
	}
	_ = w.controller().Flush()
}

// controller returns the one ResponseController of the response (SSE
// flushes once per event).
func (w *respWriter) controller() *http.ResponseController {
	if w.flusher == nil {
		w.flusher = http.NewResponseController(w.ResponseWriter)
	}
	return w.flusher
}

// Unwrap lets http.ResponseController reach the connection.
func (w *respWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finish completes a filtered response once the upstream is done.
func (w *respWriter) finish() error {
	switch w.mode {
	case modeJSON:
		out, err := mcpmsg.FilterToolsList(w.buf.Bytes(), w.allow, w.private)
		if err != nil {
			// Never pass on a list the gateway could not filter.
			w.failed = true
			w.status = http.StatusBadGateway
			w.Header().Set("Content-Type", "application/json")
			w.ResponseWriter.WriteHeader(http.StatusBadGateway)
			_, werr := w.ResponseWriter.Write(mcpmsg.ErrorResponse(firstID(w.ids), mcpmsg.CodeGatewayError,
				"Upstream tools/list result could not be filtered", nil))
			return werr
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
		w.ResponseWriter.WriteHeader(http.StatusOK)
		_, err = w.ResponseWriter.Write(out)
		return err
	case modeSSE:
		if w.clientErr != nil {
			return nil
		}
		return w.sse.Close()
	}
	return nil
}

func firstID(ids []json.RawMessage) json.RawMessage {
	if len(ids) == 1 {
		return ids[0]
	}
	return nil
}
