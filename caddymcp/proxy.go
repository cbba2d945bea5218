package caddymcp

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite"
)

// upstreamHostPlaceholder is the upstream's host:port at request time.
const upstreamHostPlaceholder = "{http.reverse_proxy.upstream.hostport}"

// completeProxy fills in what the server's upstream URL implies on a
// reverse_proxy handler the user may have configured partly (from the inner
// `reverse_proxy { ... }` block or JSON): the upstream address when none is
// given, TLS for an https upstream, the upstream's path, and the Host header
// (the upstream sees its own host, never the public one). Anything the user
// set explicitly is kept.
func completeProxy(upstream string, rp *reverseproxy.Handler) (*reverseproxy.Handler, error) {
	u, err := parseUpstream(upstream)
	if err != nil {
		return nil, err
	}
	if rp == nil {
		rp = new(reverseproxy.Handler)
	}
	if len(rp.Upstreams) == 0 && rp.DynamicUpstreamsRaw == nil {
		rp.Upstreams = reverseproxy.UpstreamPool{{Dial: u.Host}}
	}
	if rp.TransportRaw == nil && u.Scheme == "https" {
		rp.TransportRaw = caddyconfig.JSONModuleObject(
			&reverseproxy.HTTPTransport{TLS: new(reverseproxy.TLSConfig)}, "protocol", "http", nil)
	}
	if rp.Rewrite == nil {
		p := u.EscapedPath()
		if p == "" {
			p = "/"
		}
		rp.Rewrite = &rewrite.Rewrite{URI: p}
	}
	if rp.Headers == nil {
		rp.Headers = new(headers.Handler)
	}
	if rp.Headers.Request == nil {
		rp.Headers.Request = new(headers.HeaderOps)
	}
	if rp.Headers.Request.Set == nil {
		rp.Headers.Request.Set = make(http.Header)
	}
	if rp.Headers.Request.Set.Get("Host") == "" {
		rp.Headers.Request.Set.Set("Host", upstreamHostPlaceholder)
	}
	return rp, nil
}

// proxyJSON is completeProxy for a raw JSON handler (nil for none), as held
// in ServerConfig.ProxyRaw.
func proxyJSON(upstream string, raw json.RawMessage) (json.RawMessage, error) {
	var rp *reverseproxy.Handler
	if len(raw) > 0 {
		rp = new(reverseproxy.Handler)
		if err := json.Unmarshal(raw, rp); err != nil {
			return nil, fmt.Errorf("reverse_proxy: %v", err)
		}
	}
	rp, err := completeProxy(upstream, rp)
	if err != nil {
		return nil, err
	}
	return caddyconfig.JSONModuleObject(rp, "handler", "reverse_proxy", nil), nil
}

// parseUpstream parses an upstream MCP endpoint URL into scheme, host:port
// (with the scheme's default port) and path.
func parseUpstream(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("upstream %q: scheme must be http or https", s)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("upstream %q: no host", s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("upstream %q: must not carry user info, query or fragment", s)
	}
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	return u, nil
}
