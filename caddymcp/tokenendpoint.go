package caddymcp

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddymcp/gateway/connections"
	"github.com/caddymcp/gateway/policy"
)

const (
	jwksPath = "/.well-known/jwks.json"

	grantTokenExchange  = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeAccess     = "urn:ietf:params:oauth:token-type:access_token"
	tokenTypeJWT        = "urn:ietf:params:oauth:token-type:jwt"
	maxTokenRequestBody = 64 << 10
)

// serveJWKS publishes the public keys of resource tokens (old keys stay
// listed while tokens signed by them can live).
func (h *Handler) serveJWKS(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err := w.Write(h.app.minter.JWKS())
	return err
}

// tokenError is an RFC 6749 §5.2 / RFC 8693 §2.2.2 error response.
func tokenError(w http.ResponseWriter, status int, code, desc string) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

type tokenResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in,omitempty"`
	Scope           string `json:"scope,omitempty"`
}

// serveTokenEndpoint is the RFC 8693 endpoint for internal MCP servers
// (Scenario 2). The subject token is a resource token this gateway minted;
// it names the original agent, tenant and server. The request asks for
// audience=<connection name> (the tenant's connection token: an API key,
// an OAuth token) or resource=<URI> (a resource token for one of the
// tenant's resource_token connections), with an optional scope. Policy is
// evaluated for the original agent at issuance. A tenant's token can only
// ever reach that tenant's connections.
func (h *Handler) serveTokenEndpoint(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return tokenError(w, http.StatusMethodNotAllowed, "invalid_request", "the token endpoint takes POST")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenRequestBody)
	if err := r.ParseForm(); err != nil || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		return tokenError(w, http.StatusBadRequest, "invalid_request", "expected an application/x-www-form-urlencoded body")
	}
	f := r.PostForm
	for _, k := range []string{"grant_type", "subject_token", "subject_token_type", "audience", "resource", "scope"} {
		if len(f[k]) > 1 {
			return tokenError(w, http.StatusBadRequest, "invalid_request", "parameter "+k+" repeated")
		}
	}
	if f.Get("grant_type") != grantTokenExchange {
		return tokenError(w, http.StatusBadRequest, "unsupported_grant_type", "only "+grantTokenExchange+" is supported")
	}
	if f.Get("subject_token") == "" {
		return tokenError(w, http.StatusBadRequest, "invalid_request", "subject_token is required")
	}
	if tt := f.Get("subject_token_type"); tt != tokenTypeAccess && tt != tokenTypeJWT {
		return tokenError(w, http.StatusBadRequest, "invalid_request", "subject_token_type must be "+tokenTypeAccess)
	}
	audience, resource := f.Get("audience"), f.Get("resource")
	if (audience == "") == (resource == "") {
		return tokenError(w, http.StatusBadRequest, "invalid_request", "give exactly one of audience (a connection name) or resource (a URI)")
	}
	claims, err := h.app.minter.VerifyResourceToken(f.Get("subject_token"))
	if err != nil {
		return tokenError(w, http.StatusBadRequest, "invalid_grant", "subject_token is not a valid resource token of this gateway")
	}
	x := &exchange{method: "token-exchange", decisionID: newDecisionID()}
	srvCfg := h.app.serverByName(claims.Server)
	if srvCfg == nil || srvCfg.cfg.Tenant != claims.Tenant {
		return tokenError(w, http.StatusBadRequest, "invalid_grant", "subject_token names no server of its tenant")
	}
	x.srv = srvCfg

	// The target: only ever a connection of the token's own tenant.
	var conn *connections.Connection
	if audience != "" {
		conn = h.app.conns[claims.Tenant][audience]
		x.tool = audience
	} else {
		x.tool = resource
		for _, c := range h.app.conns[claims.Tenant] {
			if c.Kind() == connections.KindResourceToken && c.Audience() == resource {
				conn = c
				break
			}
		}
	}
	if conn == nil {
		x.decision = policy.Decision{Outcome: policy.OutcomeDeny, Reason: "unknown target for tenant " + claims.Tenant}
		h.auditTokenEndpoint(r, x, claims.Subject, claims.ClientID)
		return tokenError(w, http.StatusBadRequest, "invalid_target", "no such connection or resource for this tenant")
	}
	switch conn.Kind() {
	case connections.KindTokenExchange, connections.KindHeaders:
		return tokenError(w, http.StatusBadRequest, "invalid_target", "this connection's credential cannot be handed out")
	}

	need := strings.Fields(f.Get("scope"))
	if len(need) == 0 {
		need = claims.Scopes
	}
	x.decision = h.app.policies.Decide(&policy.Input{
		Agent:  policy.Agent{ClientID: claims.ClientID, Subject: claims.Subject, Groups: claims.Groups},
		Server: claims.Server, Tenant: claims.Tenant,
		// The token's scopes are what the agent held; the internal
		// server's own address says nothing about the agent's, so IP
		// conditions see no address (allow ... ip never matches it, a
		// deny ... ip always does).
		TokenScopes: claims.Scopes, ClientIP: netip.Addr{}, Need: need,
	})
	h.auditTokenEndpoint(r, x, claims.Subject, claims.ClientID)
	if !x.decision.Allowed {
		return tokenError(w, http.StatusBadRequest, "invalid_scope", "policy refuses the requested scope: "+x.decision.Reason+" (decision "+x.decisionID+")")
	}

	cred, err := conn.Credential(r.Context(), connections.Request{Scopes: x.decision.Effective, Subject: claims.Subject,
		ClientID: claims.ClientID, Groups: claims.Groups, Server: claims.Server})
	if err != nil {
		if errors.Is(err, connections.ErrNoDownstreamScopes) {
			return tokenError(w, http.StatusBadRequest, "invalid_scope", err.Error())
		}
		h.logger.Warn("token endpoint: connection failed", zap.String("tenant", claims.Tenant), zap.String("connection", conn.Name()), zap.Error(err))
		return tokenError(w, http.StatusBadGateway, "temporarily_unavailable", "connection "+conn.Name()+" is unavailable")
	}
	resp := tokenResponse{AccessToken: cred.Token, IssuedTokenType: tokenTypeAccess, TokenType: cred.TokenType, Scope: strings.Join(cred.Scopes, " ")}
	if resp.TokenType == "" {
		resp.TokenType = "Bearer"
	}
	if !cred.Expiry.IsZero() {
		resp.ExpiresIn = int64(time.Until(cred.Expiry) / time.Second)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(http.StatusOK)
	return json.NewEncoder(w).Encode(resp)
}

func (h *Handler) auditTokenEndpoint(r *http.Request, x *exchange, sub, client string) {
	ce := h.app.audit.Check(zap.InfoLevel, "decision")
	if ce == nil {
		return
	}
	d := &x.decision
	ce.Write(
		zap.String("decision_id", x.decisionID),
		zap.String("decision", d.AuditDecision()),
		zap.String("tenant", x.srv.cfg.Tenant),
		zap.String("server", x.srv.cfg.Name),
		zap.String("method", x.method),
		zap.String("target", x.tool),
		zap.String("agent", client),
		zap.String("subject", sub),
		zap.String("policy", d.Policy),
		zap.String("reason", d.Reason),
		zap.String("client_ip", clientIP(r).String()),
	)
}
