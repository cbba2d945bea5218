package caddymcp

import (
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// audit writes the one entry per decision on logger `mcp.audit` (SPEC step
// 9). It never carries a token or secret: the token appears as a short hash
// prefix at most.
func (h *Handler) audit(r *http.Request, x *exchange, decision string, upstreamStatus int, latency time.Duration) {
	x.srv.metrics.observe(decision, &x.decision, upstreamStatus, latency)
	ce := h.app.audit.Check(zapcore.InfoLevel, "decision")
	if ce == nil {
		return
	}
	fp := auditFields.Get().(*[]zap.Field)
	defer func() {
		clear(*fp)
		auditFields.Put(fp)
	}()
	fields := append((*fp)[:0],
		zap.String("decision_id", x.decisionID),
		zap.String("decision", decision),
		zap.String("tenant", x.srv.cfg.Tenant),
		zap.String("server", x.srv.cfg.Name),
		zap.String("method", x.method),
	)
	if x.tool != "" {
		fields = append(fields, zap.String("tool", x.tool))
	}
	if x.id != nil {
		fields = append(fields,
			zap.String("agent", x.id.Agent),
			zap.String("subject", x.id.Subject),
			zap.String("issuer", x.id.Issuer),
			zap.String("token_hash", x.id.TokenHash),
		)
	} else {
		fields = append(fields, zap.Bool("anonymous", true))
	}
	d := &x.decision
	if d.Policy != "" {
		fields = append(fields, zap.String("policy", d.Policy))
	}
	if d.Reason != "" {
		fields = append(fields, zap.String("reason", d.Reason))
	}
	if d.WouldDeny {
		fields = append(fields, zap.String("would_deny_policy", d.WouldPolicy), zap.String("would_deny_reason", d.WouldReason))
	}
	if len(d.StepUpScopes) > 0 {
		fields = append(fields, zap.Strings("step_up_scopes", d.StepUpScopes))
	}
	if x.protocol != "" {
		fields = append(fields, zap.String("protocol", x.protocol))
	}
	fields = append(fields,
		zap.String("client_ip", x.clientIP.String()),
		zap.Int("upstream_status", upstreamStatus),
		zap.Duration("latency", latency),
	)
	ce.Write(fields...)
	*fp = fields
}

// auditFields recycles the field slices of audit entries (18 fields of 64
// bytes each would otherwise be allocated per request). zap's encoders do
// not keep the slice after Write.
var auditFields = sync.Pool{New: func() any {
	s := make([]zap.Field, 0, 20)
	return &s
}}
