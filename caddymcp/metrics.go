package caddymcp

import (
	"errors"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddymcp/gateway/connections"
	"github.com/caddymcp/gateway/policy"
	"github.com/caddymcp/gateway/tokens"
)

// Prometheus metrics, served on Caddy's metrics endpoint (the `metrics`
// handler or the admin API's /metrics). Every name starts with caddy_mcp_
// (namespace caddy, subsystem mcp, like Caddy's own caddy_http_*).
//
// Counters observed on the request path (decisions, token validations,
// upstream latency) are package-level collectors: Caddy gives each config a
// fresh registry, and registering the same collectors into it on every
// provision carries their values across `caddy reload`. Everything else is
// read from the counters the caches and key sets keep anyway, at scrape
// time, by a collector bound to the provisioned app: no per-request cost.
//
// Label values come from configuration only (server, tenant, connection
// names, issuer URLs) or from small fixed enums (decision, reason_class,
// result): never a token, subject, client id, tool name or IP.
//
// Metric | Type | Labels
// -------|------|-------
// caddy_mcp_decisions_total | counter | server, tenant, decision, reason_class
// caddy_mcp_upstream_request_duration_seconds | histogram | server
// caddy_mcp_token_validations_total | counter | result
// caddy_mcp_token_verifications_total | counter |
// caddy_mcp_token_cache_hits_total | counter |
// caddy_mcp_token_cache_misses_total | counter |
// caddy_mcp_token_cache_evictions_total | counter |
// caddy_mcp_token_cache_entries | gauge |
// caddy_mcp_jwks_refreshes_total | counter | issuer
// caddy_mcp_jwks_refresh_failures_total | counter | issuer
// caddy_mcp_jwks_keys | gauge | issuer
// caddy_mcp_connection_token_requests_total | counter | tenant, connection
// caddy_mcp_connection_token_failures_total | counter | tenant, connection
// caddy_mcp_connection_token_cache_hits_total | counter |
// caddy_mcp_connection_token_cache_misses_total | counter |
// caddy_mcp_sessions_tracked | gauge |

const (
	metricsNamespace = "caddy"
	metricsSubsystem = "mcp"
)

// Decision labels (the audit `decision` field).
const (
	decAllow = iota
	decDeny
	decStepUp
	decWouldDeny
	decInvalid
	decSessionRefused
	decOther
	numDecisions
)

var decisionNames = [numDecisions]string{"allow", "deny", "step_up", "would_deny", "invalid", "session_refused", "other"}

// Reason classes: a bounded summary of the decision's free-text reason.
const (
	reasonOK             = iota // allowed
	reasonReport                // allowed, but a `mode report` policy would deny
	reasonPolicy                // a deny policy decided
	reasonNoPolicy              // no policy grants access to the server at all
	reasonScope                 // no policy grants a needed scope
	reasonStepUp                // the token lacks scopes policy would grant
	reasonHeaderMismatch        // Mcp-Method / Mcp-Name disagree with the body
	reasonSession               // bad, foreign or expired session id
	reasonOther
	numReasons
)

var reasonNames = [numReasons]string{"ok", "report", "policy", "no_policy", "scope", "step_up", "header_mismatch", "session", "other"}

// Token validation results.
const (
	tokValid = iota
	tokMissing
	tokInvalidToken
	tokInvalidRequest
	numTokenResults
)

var tokenResultNames = [numTokenResults]string{"valid", "missing", "invalid_token", "invalid_request"}

// upstreamBuckets reach further than Prometheus' defaults: tool calls can
// take a while.
var upstreamBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}

// gatewayMetrics are the request-path collectors, shared by every config.
type gatewayMetrics struct {
	decisions *prometheus.CounterVec
	upstream  *prometheus.HistogramVec
	tokens    *prometheus.CounterVec
	tokenBy   [numTokenResults]prometheus.Counter
}

var gwMetrics = newGatewayMetrics()

func newGatewayMetrics() *gatewayMetrics {
	m := &gatewayMetrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem,
			Name: "decisions_total",
			Help: "Authorization decisions, by server, tenant, decision (allow, deny, step_up, would_deny, invalid, session_refused) and reason class.",
		}, []string{"server", "tenant", "decision", "reason_class"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem,
			Name:    "upstream_request_duration_seconds",
			Help:    "Time from handing a request to the upstream until its response (or stream) ended.",
			Buckets: upstreamBuckets,
		}, []string{"server"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem,
			Name: "token_validations_total",
			Help: "Agent access tokens checked, by result (valid, missing, invalid_token, invalid_request).",
		}, []string{"result"}),
	}
	for i, name := range tokenResultNames {
		m.tokenBy[i] = m.tokens.WithLabelValues(name)
	}
	return m
}

func (m *gatewayMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.decisions, m.upstream, m.tokens}
}

// register adds c to reg; a collector already there (a second app or
// handler of the same config) is fine.
func register(reg prometheus.Registerer, c prometheus.Collector) error {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return nil
		}
		return err
	}
	return nil
}

// registerMetrics registers the gateway's collectors with reg: the shared
// request-path ones and a collector reading a's caches and key sets.
func registerMetrics(reg prometheus.Registerer, a *App) error {
	for _, c := range gwMetrics.collectors() {
		if err := register(reg, c); err != nil {
			return err
		}
	}
	if a == nil {
		return nil
	}
	return register(reg, newStatsCollector(a))
}

// provisionMetrics registers the metrics with the config's registry. Call
// it at the end of App.Provision (after auth, sessions and connections).
func (a *App) provisionMetrics(ctx caddy.Context) error {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	return registerMetrics(reg, a)
}

// serverMetrics are one server's pre-resolved metric children: the hot
// path costs an atomic load and an atomic add. Children are created on
// first use, so unused label combinations export nothing.
type serverMetrics struct {
	name, tenant string
	decisions    [numDecisions][numReasons]atomic.Pointer[counterRef]
	upstream     atomic.Pointer[observerRef]
}

type counterRef struct{ c prometheus.Counter }
type observerRef struct{ o prometheus.Observer }

// newServerMetrics returns the metric children of a server; name and tenant
// come from configuration.
func newServerMetrics(name, tenant string) *serverMetrics {
	return &serverMetrics{name: name, tenant: tenant}
}

// observe records one decision as written to the audit log (decision is the
// audit decision label, d the policy decision, empty for refusals made
// before policy) and, when the request reached the upstream
// (upstreamStatus != 0), its latency. A nil receiver does nothing.
func (m *serverMetrics) observe(decision string, d *policy.Decision, upstreamStatus int, latency time.Duration) {
	if m == nil {
		return
	}
	m.observeDecision(decisionIndex(decision), reasonClass(decision, d))
	if upstreamStatus != 0 {
		m.observeUpstream(latency)
	}
}

func (m *serverMetrics) observeDecision(dec, reason int) {
	p := &m.decisions[dec][reason]
	ref := p.Load()
	if ref == nil {
		ref = &counterRef{gwMetrics.decisions.WithLabelValues(m.name, m.tenant, decisionNames[dec], reasonNames[reason])}
		p.Store(ref)
	}
	ref.c.Inc()
}

func (m *serverMetrics) observeUpstream(latency time.Duration) {
	ref := m.upstream.Load()
	if ref == nil {
		ref = &observerRef{gwMetrics.upstream.WithLabelValues(m.name)}
		m.upstream.Store(ref)
	}
	ref.o.Observe(latency.Seconds())
}

func decisionIndex(decision string) int {
	for i, n := range decisionNames {
		if n == decision {
			return i
		}
	}
	return decOther
}

// reasonClass maps a decision and its free-text reason onto a bounded enum.
func reasonClass(decision string, d *policy.Decision) int {
	switch decision {
	case "allow":
		return reasonOK
	case "would_deny":
		return reasonReport
	case "step_up":
		return reasonStepUp
	case "invalid":
		return reasonHeaderMismatch
	case "session_refused":
		return reasonSession
	case "deny":
		if d == nil {
			return reasonOther
		}
		switch {
		case d.Policy != "":
			return reasonPolicy
		case d.Reason == "no policy grants access":
			return reasonNoPolicy
		case strings.HasPrefix(d.Reason, "no policy grants scope"):
			return reasonScope
		}
	}
	return reasonOther
}

// observeTokenValidation counts the outcome of authenticating one request:
// err is what tokens.BearerToken or Validator.Validate returned.
func observeTokenValidation(err error) {
	i := tokValid
	if err != nil {
		i = tokInvalidToken
		var te *tokens.Error
		switch {
		case errors.Is(err, tokens.ErrNoToken):
			i = tokMissing
		case errors.As(err, &te) && te.Code == tokens.CodeInvalidRequest:
			i = tokInvalidRequest
		}
	}
	gwMetrics.tokenBy[i].Inc()
}

// statsCollector reads the counters of one provisioned app's shared state
// at scrape time. It holds the objects themselves, not the app, so a
// scrape racing with a reload never sees half-cleaned state.
type statsCollector struct {
	cache     *tokens.Cache
	validator *tokens.Validator
	keysets   []*tokens.KeySet
	conns     []connStat
	connCache *tokens.ConnCache
	idle      *idleTracker
}

type connStat struct {
	tenant, name string
	conn         *connections.Connection
}

var (
	descVerifications = newDesc("token_verifications_total", "Token signatures verified (token cache misses that reached signature checking).")
	descCacheHits     = newDesc("token_cache_hits_total", "Verified-token cache hits.")
	descCacheMisses   = newDesc("token_cache_misses_total", "Verified-token cache misses.")
	descCacheEvicted  = newDesc("token_cache_evictions_total", "Verified tokens evicted from the cache to stay within its budget.")
	descCacheEntries  = newDesc("token_cache_entries", "Approximate number of verified tokens cached.")
	descJWKSRefreshes = newDesc("jwks_refreshes_total", "Successful JWKS fetches, by issuer.", "issuer")
	descJWKSFailures  = newDesc("jwks_refresh_failures_total", "Failed JWKS fetches (the last good keys are kept), by issuer.", "issuer")
	descJWKSKeys      = newDesc("jwks_keys", "Usable keys currently loaded, by issuer.", "issuer")
	descConnRequests  = newDesc("connection_token_requests_total", "Token requests made for a tenant connection (oauth2, refresh, token exchange).", "tenant", "connection")
	descConnFailures  = newDesc("connection_token_failures_total", "Token requests for a tenant connection that did not yield a token.", "tenant", "connection")
	descConnHits      = newDesc("connection_token_cache_hits_total", "Connection tokens served from the cache.")
	descConnMisses    = newDesc("connection_token_cache_misses_total", "Connection token cache misses.")
	descSessions      = newDesc("sessions_tracked", "Sessions with an idle timeout this instance tracks.")
)

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(metricsNamespace, metricsSubsystem, name), help, labels, nil)
}

func newStatsCollector(a *App) *statsCollector {
	c := &statsCollector{idle: a.idle, connCache: a.connCache}
	if a.auth != nil {
		c.cache = a.auth.cache
		c.validator = a.auth.validator
	}
	c.keysets = appKeySets(a)
	for tenant, m := range a.conns {
		for name, conn := range m {
			if conn != nil {
				c.conns = append(c.conns, connStat{tenant: tenant, name: name, conn: conn})
			}
		}
	}
	sort.Slice(c.conns, func(i, j int) bool {
		if c.conns[i].tenant != c.conns[j].tenant {
			return c.conns[i].tenant < c.conns[j].tenant
		}
		return c.conns[i].name < c.conns[j].name
	})
	return c
}

// appKeySets returns the app's key sets, each once, global ones first.
func appKeySets(a *App) []*tokens.KeySet {
	if a.auth == nil {
		return nil
	}
	seen := map[*tokens.KeySet]bool{}
	var out []*tokens.KeySet
	add := func(list []*tokens.KeySet) {
		for _, ks := range list {
			if ks != nil && !seen[ks] {
				seen[ks] = true
				out = append(out, ks)
			}
		}
	}
	add(a.auth.global)
	tenants := make([]string, 0, len(a.auth.byTenant))
	for t := range a.auth.byTenant {
		tenants = append(tenants, t)
	}
	sort.Strings(tenants)
	for _, t := range tenants {
		add(a.auth.byTenant[t])
	}
	return out
}

// Describe implements prometheus.Collector.
func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descVerifications, descCacheHits, descCacheMisses, descCacheEvicted, descCacheEntries,
		descJWKSRefreshes, descJWKSFailures, descJWKSKeys,
		descConnRequests, descConnFailures, descConnHits, descConnMisses, descSessions,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if c.validator != nil {
		counter(descVerifications, c.validator.Stats().Verifications)
	}
	if c.cache != nil {
		st := c.cache.Stats()
		counter(descCacheHits, st.Hits)
		counter(descCacheMisses, st.Misses)
		counter(descCacheEvicted, st.KeysEvicted)
		entries := uint64(0)
		if st.KeysAdded > st.KeysEvicted {
			entries = st.KeysAdded - st.KeysEvicted
		}
		gauge(descCacheEntries, float64(entries))
	}
	// Two key sets may share an issuer URL (say, two tenants trusting it
	// with different settings): sum them, a label set may appear once.
	type jwks struct {
		refreshes, failures uint64
		keys                int
	}
	byIssuer := map[string]*jwks{}
	var issuers []string
	for _, ks := range c.keysets {
		st := ks.Stats()
		j := byIssuer[st.Issuer]
		if j == nil {
			j = new(jwks)
			byIssuer[st.Issuer] = j
			issuers = append(issuers, st.Issuer)
		}
		j.refreshes += st.Refreshes
		j.failures += st.Failures
		j.keys += st.Keys
	}
	for _, iss := range issuers {
		j := byIssuer[iss]
		counter(descJWKSRefreshes, j.refreshes, iss)
		counter(descJWKSFailures, j.failures, iss)
		gauge(descJWKSKeys, float64(j.keys), iss)
	}
	for _, cs := range c.conns {
		switch cs.conn.Kind() {
		case connections.KindOAuth2, connections.KindRefreshToken, connections.KindTokenExchange:
		default:
			continue // no token requests to count
		}
		st := cs.conn.Stats()
		counter(descConnRequests, st.Requests, cs.tenant, cs.name)
		counter(descConnFailures, st.Failures, cs.tenant, cs.name)
	}
	if c.connCache != nil {
		st := c.connCache.Stats()
		counter(descConnHits, st.Hits)
		counter(descConnMisses, st.Misses)
	}
	if c.idle != nil {
		gauge(descSessions, float64(c.idle.count()))
	}
}

// count returns the number of sessions tracked (for metrics and the admin
// API; it locks every shard in turn).
func (t *idleTracker) count() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.Lock()
		n += len(sh.m)
		sh.Unlock()
	}
	return n
}

// Interface guards
var _ prometheus.Collector = (*statsCollector)(nil)
