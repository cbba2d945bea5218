package caddymcp

import (
	"errors"
	"net/http"

	"go.uber.org/zap"

	"github.com/caddymcp/gateway/connections"
	"github.com/caddymcp/gateway/mcpmsg"
)

// injectCredentials is step 7: the client's Authorization, Cookie and every
// header the connection sets are removed, then the connection's credential
// is set. A connection that cannot deliver answers 502 with a JSON-RPC
// error naming it (never its secret); cached tokens keep serving until
// they expire, so this only happens when none is left.
func (h *Handler) injectCredentials(w http.ResponseWriter, r *http.Request, x *exchange) (bool, error) {
	conn := x.srv.conn
	if conn == nil {
		r.Header.Del("Authorization")
		r.Header.Del("Proxy-Authorization")
		r.Header.Del("Cookie")
		x.setAffinity(r)
		return true, nil
	}
	req := connections.Request{Scopes: x.decision.Effective, SubjectToken: x.rawToken, Server: x.srv.cfg.Name}
	if x.id != nil {
		req.Subject, req.ClientID, req.Groups = x.id.Subject, x.id.Agent, x.id.Groups
	}
	cred, err := conn.Credential(r.Context(), req)
	if err != nil {
		var id []byte
		if x.msg != nil {
			id = x.msg.ID
		}
		if errors.Is(err, connections.ErrNoDownstreamScopes) {
			x.decision.Reason = err.Error()
			h.audit(r, x, "deny", 0, 0)
			return false, writeJSONRPC(w, http.StatusOK, mcpmsg.ForbiddenResponse(id, &mcpmsg.ErrorData{Reason: err.Error(), DecisionID: x.decisionID}))
		}
		h.logger.Warn("connection failed", zap.String("server", x.srv.cfg.Name), zap.String("tenant", x.srv.cfg.Tenant),
			zap.String("connection", conn.Name()), zap.Error(err))
		x.decision.Reason = "connection failed"
		h.audit(r, x, "connection_error", http.StatusBadGateway, 0)
		return false, writeJSONRPC(w, http.StatusBadGateway, mcpmsg.ErrorResponse(id, mcpmsg.CodeConnectionError,
			"Connection "+conn.Name()+" of tenant "+x.srv.cfg.Tenant+" is unavailable: "+err.Error(), nil))
	}
	r.Header.Del("Cookie")
	conn.Inject(r.Header, cred)
	x.setAffinity(r)
	return true, nil
}

// setAffinity sends the session's upstream-affinity cookie (after the
// client's cookies were removed), so reverse_proxy's `lb_policy cookie`
// keeps the session on the upstream instance that holds it.
func (x *exchange) setAffinity(r *http.Request) {
	if x.affinity != "" {
		r.Header.Set("Cookie", x.affinity)
	}
}
