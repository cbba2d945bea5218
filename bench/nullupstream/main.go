// Command nullupstream is the benchmark's minimal MCP upstream: it answers every POST with a
// fixed reply so that a proxy in front of it, not the upstream, dominates the cost of a request.
//
//   - tools/call -> text/event-stream, one "message" event carrying a fixed result
//   - tools/list -> application/json, a fixed list of tools (some of which a gateway may filter)
//   - anything else (initialize, server/discover, ...) -> application/json, a fixed empty result
//   - GET -> text/event-stream held open until the client goes away (for the SSE-streams test)
//
// The request's JSON-RPC id is echoed (found with a cheap byte scan, not a JSON parse).
// Usage: nullupstream -addr 127.0.0.1:9501
package main

import (
	"bytes"
	"flag"
	"io"
	"log"
	"net/http"
	"strconv"
	"time"
)

const callResult = `"result":{"content":[{"type":"text","text":"ok"}],"isError":false}}`

const listResult = `"result":{"tools":[` +
	`{"name":"echo","description":"Echo","inputSchema":{"type":"object","properties":{"text":{"type":"string"}}}},` +
	`{"name":"add","description":"Add","inputSchema":{"type":"object","properties":{"a":{"type":"number"},"b":{"type":"number"}}}},` +
	`{"name":"admin_delete","description":"Delete everything","inputSchema":{"type":"object"}},` +
	`{"name":"search","description":"Search","inputSchema":{"type":"object","properties":{"q":{"type":"string"}}}},` +
	`{"name":"admin_reset","description":"Reset","inputSchema":{"type":"object"}}` +
	`]}}`

const otherResult = `"result":{}}`

// scanID returns the raw JSON of the top-level "id" value, or "null".
func scanID(body []byte) []byte {
	i := bytes.Index(body, []byte(`"id"`))
	if i < 0 {
		return []byte("null")
	}
	j := i + 4
	for j < len(body) && (body[j] == ' ' || body[j] == ':' || body[j] == '\t') {
		j++
	}
	k := j
	if k < len(body) && body[k] == '"' {
		k++
		for k < len(body) && body[k] != '"' {
			if body[k] == '\\' {
				k++
			}
			k++
		}
		k++
	} else {
		for k < len(body) && body[k] != ',' && body[k] != '}' && body[k] != ' ' {
			k++
		}
	}
	if k > len(body) || j == k {
		return []byte("null")
	}
	return body[j:k]
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9501", "listen address")
	flag.Parse()

	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			// A long-lived SSE stream: one priming comment, then a keepalive every 15s.
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Cache-Control", "no-cache")
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, ": open\n\n")
			w.(http.Flusher).Flush()
			t := time.NewTicker(15 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-r.Context().Done():
					return
				case <-t.C:
					io.WriteString(w, ": keepalive\n\n")
					w.(http.Flusher).Flush()
				}
			}
		case http.MethodPost:
		case http.MethodDelete:
			w.WriteHeader(http.StatusAccepted)
			return
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		// Tell the benchmark's pre-check what credentials arrived (never their values).
		if r.Header.Get("X-Api-Key") != "" {
			w.Header().Set("X-Bench-Saw-Api-Key", "1")
		}
		if r.Header.Get("Authorization") != "" {
			w.Header().Set("X-Bench-Saw-Authorization", "1")
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if !bytes.Contains(body, []byte(`"id"`)) { // notification
			w.WriteHeader(http.StatusAccepted)
			return
		}
		id := scanID(body)
		var msg []byte
		msg = append(msg, `{"jsonrpc":"2.0","id":`...)
		msg = append(msg, id...)
		msg = append(msg, ',')
		switch {
		case bytes.Contains(body, []byte(`"tools/call"`)):
			msg = append(msg, callResult...)
			var out []byte
			out = append(out, "event: message\ndata: "...)
			out = append(out, msg...)
			out = append(out, "\n\n"...)
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Cache-Control", "no-cache")
			w.Header().Set("Content-Length", strconv.Itoa(len(out)))
			w.Write(out)
			return
		case bytes.Contains(body, []byte(`"tools/list"`)):
			msg = append(msg, listResult...)
		default:
			msg = append(msg, otherResult...)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(msg)))
		w.Write(msg)
	})
	srv := &http.Server{Addr: *addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("nullupstream listening on %s", *addr)
	log.Fatal(srv.ListenAndServe())
}
