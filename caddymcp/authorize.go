package caddymcp

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddymcp/gateway/mcpmsg"
	"github.com/caddymcp/gateway/policy"
	"github.com/caddymcp/gateway/tokens"
)

// Protocol revisions with special rules.
const (
	rev20250326 = "2025-03-26"
	rev20260728 = "2026-07-28"
)

// defaultMaxBody caps a POSTed JSON-RPC message.
const defaultMaxBody = 4 << 20

// exchange is what the gateway learned about one request on its way
// through the pipeline; it feeds the audit entry and the placeholders.
type exchange struct {
	srv      *server
	id       *tokens.Identity // nil for anonymous servers
	msg      *mcpmsg.Message  // nil for GET/DELETE
	protocol string
	method   string // JSON-RPC method, or the HTTP method for GET/DELETE
	tool     string // params.name / params.uri when the method has one
	decision policy.Decision
	// decisionID ties the JSON-RPC error, the audit entry and logs together.
	decisionID string
	// filterIDs are the ids of tools/list requests whose responses must be
	// filtered for this agent; empty when no filtering is needed.
	filterIDs []json.RawMessage
	// clientIP is the client address as Caddy determined it.
	clientIP netip.Addr
	// rawToken is the agent's access token: only ever the subject of a
	// token_exchange connection, never logged, never forwarded.
	rawToken string
	// the client's sealed Mcp-Session-Id and the upstream's id inside it
	sealedSession, upstreamSession string
	sessionCreated                 time.Time
	// affinity is the upstream-affinity cookie sealed in the session.
	affinity string
	// auditDecision is the decision as audited ({mcp.decision}); empty
	// until the request has been authorized.
	auditDecision string
	// phMethod and phTool are {mcp.method} and {mcp.tool}, known (phSet)
	// once the message has been read and its headers checked.
	phMethod, phTool string
	phSet            bool

	// Held here so that one allocation serves the whole request: the
	// response wrapper and the re-readable body handed to the upstream.
	rw   respWriter
	body bodyReader
}

// placeholder resolves the {mcp.*} placeholders (Replacer.Map): read when
// something asks, each known from the step that sets it on (server and
// tenant at routing, agent and subject after authentication, method and
// tool after the message is read, decision after authorization) — the
// same values the pipeline would have stored with Replacer.Set, without
// boxing seven strings per request.
func (x *exchange) placeholder(key string) (any, bool) {
	if len(key) < 4 || key[:4] != "mcp." {
		return nil, false
	}
	switch key[4:] {
	case "server":
		return x.srv.cfg.Name, true
	case "tenant":
		return x.srv.cfg.Tenant, true
	case "agent":
		if x.id != nil {
			return x.id.Agent, true
		}
	case "subject":
		if x.id != nil {
			return x.id.Subject, true
		}
	case "method":
		if x.phSet {
			return x.phMethod, true
		}
	case "tool":
		if x.phSet {
			return x.phTool, true
		}
	case "decision":
		if x.auditDecision != "" {
			return x.auditDecision, true
		}
	}
	return nil, false
}

// bodyReader is the inspected request body, forwarded unchanged.
type bodyReader struct{ bytes.Reader }

func (*bodyReader) Close() error { return nil }

func newDecisionID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// readMessage is step 4: the POST body is read (capped), inspected as one
// JSON-RPC message (or a batch) and put back intact for the upstream. It
// writes the error response itself and returns nil when the body is bad.
func (h *Handler) readMessage(w http.ResponseWriter, r *http.Request, x *exchange) (*mcpmsg.Message, error) {
	body, err := mcpmsg.ReadBodySized(r.Body, defaultMaxBody, r.ContentLength)
	_ = r.Body.Close()
	if err != nil {
		if errors.Is(err, mcpmsg.ErrTooLarge) {
			return nil, writeJSONRPC(w, http.StatusRequestEntityTooLarge,
				mcpmsg.ErrorResponse(nil, mcpmsg.CodeInvalidRequest, "Request body too large", nil))
		}
		return nil, writeJSONRPC(w, http.StatusBadRequest,
			mcpmsg.ErrorResponse(nil, mcpmsg.CodeParseError, "Could not read the request body", nil))
	}
	msg, err := mcpmsg.Inspect(body)
	if err != nil {
		return nil, writeJSONRPC(w, mcpmsg.HTTPStatus(err), mcpmsg.InspectErrorResponse(err))
	}
	x.body.Reset(body)
	r.Body = &x.body
	if r.ContentLength != int64(len(body)) { // it was chunked
		r.ContentLength = int64(len(body))
		r.Header.Set("Content-Length", strconv.Itoa(len(body)))
	}
	return msg, nil
}

// protocolOf returns the revision a request speaks: the
// MCP-Protocol-Version header, or the _meta version of a 2026-07-28 body.
func protocolOf(r *http.Request, msg *mcpmsg.Message) string {
	if v := r.Header.Get("Mcp-Protocol-Version"); v != "" {
		return v
	}
	if msg != nil {
		if msg.ProtocolVersion != "" {
			return msg.ProtocolVersion
		}
		for _, m := range msg.Batch {
			if m.ProtocolVersion != "" {
				return m.ProtocolVersion
			}
		}
	}
	return ""
}

// clientIP is the client address as Caddy determined it (honouring
// trusted_proxies).
func clientIP(r *http.Request) netip.Addr {
	if s, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok {
		if ip, err := netip.ParseAddr(s); err == nil {
			return ip.Unmap()
		}
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// need returns the scopes one message needs: the server's require scopes
// plus the scopes of the tool, resource or prompt it targets.
func (s *server) need(m *mcpmsg.Message) []string {
	if m == nil || m.Kind != mcpmsg.KindRequest {
		return s.cfg.Require
	}
	switch m.Method {
	case "tools/call":
		return s.tools.Need(s.cfg.Require, m.Name)
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		return s.resources.Need(s.cfg.Require, m.URI)
	case "prompts/get":
		return s.prompts.Need(s.cfg.Require, m.Name)
	}
	return s.cfg.Require
}

// decide evaluates the policies for one message.
func (h *Handler) decide(r *http.Request, x *exchange, m *mcpmsg.Message) policy.Decision {
	need := x.srv.need(m)
	in := &policy.Input{
		Server:   x.srv.cfg.Name,
		Tenant:   x.srv.cfg.Tenant,
		ClientIP: x.clientIP,
		Need:     need,
	}
	if x.id != nil {
		in.Agent = policy.Agent{ClientID: x.id.Agent, Subject: x.id.Subject, Groups: x.id.Groups, Claims: x.id.Claims}
		in.TokenScopes = x.id.Scopes
	} else {
		// An anonymous caller holds no token: it may use whatever the
		// policies for agents * grant.
		in.TokenScopes = x.srv.anonScopes
	}
	return h.app.policies.Decide(in)
}

// authorize is step 5. For a POST it authorizes the message (every element
// of a batch); for GET and DELETE the server's require scopes. It writes
// the refusal itself and returns false when the request must stop.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request, x *exchange) (bool, error) {
	msg := x.msg
	if msg == nil {
		x.decision = h.decide(r, x, nil)
		return h.enforce(w, r, x, nil)
	}
	if msg.Kind == mcpmsg.KindBatch {
		if x.protocol != "" && x.protocol != rev20250326 {
			return false, writeJSONRPC(w, http.StatusBadRequest, mcpmsg.ErrorResponse(nil, mcpmsg.CodeInvalidRequest,
				"JSON-RPC batches are only allowed with protocol revision 2025-03-26", nil))
		}
		// Every element is authorized; one refusal rejects the whole batch.
		for _, m := range msg.Batch {
			x.method, x.tool = m.Method, m.Target()
			x.decision = h.decide(r, x, m)
			if x.decision.Outcome != policy.OutcomeAllow {
				return h.enforce(w, r, x, m)
			}
			if m.Kind == mcpmsg.KindRequest && m.Method == "tools/list" && x.srv.tools.Len() > 0 {
				x.filterIDs = append(x.filterIDs, m.ID)
			}
		}
		if len(msg.Batch) > 1 {
			x.method, x.tool = "batch", ""
		}
		return true, nil
	}
	x.decision = h.decide(r, x, msg)
	if msg.Kind == mcpmsg.KindRequest && msg.Method == "tools/list" && x.srv.tools.Len() > 0 {
		x.filterIDs = append(x.filterIDs, msg.ID)
	}
	return h.enforce(w, r, x, msg)
}

// enforce turns x.decision into the response the SPEC prescribes.
func (h *Handler) enforce(w http.ResponseWriter, r *http.Request, x *exchange, m *mcpmsg.Message) (bool, error) {
	d := &x.decision
	switch d.Outcome {
	case policy.OutcomeAllow:
		return true, nil
	case policy.OutcomeStepUp:
		w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="`+
			strings.Join(d.StepUpScopes, " ")+`", resource_metadata="`+x.srv.metadataURL(r)+`"`)
		return false, writeHTTPError(w, http.StatusForbidden, "insufficient_scope")
	}
	data := &mcpmsg.ErrorData{Reason: d.Reason, Policy: d.Policy, DecisionID: x.decisionID}
	if m == nil || m.Kind != mcpmsg.KindRequest {
		// GET / DELETE, notifications and responses have no id to answer.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, err := w.Write(mcpmsg.ForbiddenResponse(nil, data))
		return false, err
	}
	var body []byte
	if m.Method == "tools/call" {
		body = mcpmsg.DeniedToolResponse(m.ID, m.Name, data)
	} else {
		body = mcpmsg.ForbiddenResponse(m.ID, data)
	}
	if x.msg.Kind == mcpmsg.KindBatch {
		body = batchRefusal(x.msg, body, data)
	}
	return false, writeJSONRPC(w, http.StatusOK, body)
}

// batchRefusal answers every request of a refused batch.
func batchRefusal(batch *mcpmsg.Message, first []byte, data *mcpmsg.ErrorData) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	n := 0
	for _, m := range batch.Batch {
		if m.Kind != mcpmsg.KindRequest {
			continue
		}
		if n > 0 {
			b.WriteByte(',')
		}
		n++
		b.Write(bytes.TrimSpace(mcpmsg.ForbiddenResponse(m.ID, data)))
	}
	if n == 0 {
		return first
	}
	b.WriteByte(']')
	return b.Bytes()
}

func writeJSONRPC(w http.ResponseWriter, status int, body []byte) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err := w.Write(body)
	return err
}
