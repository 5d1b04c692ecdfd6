package httpx

import (
	"bytes"
	"net"
	"net/netip"
	"strings"

	"github.com/valyala/fasthttp"

	"llmcache/pipeline"
)

// Browsers are clients too, driven by whatever page is open. A page cannot read a cross-origin answer,
// but it can send a POST anywhere (a form, fetch in no-cors mode), and after a DNS rebinding
// (evil.example re-resolved to 127.0.0.1) its requests to "evil.example" reach a proxy on loopback as
// same-origin ones, whose answers it can read. Local daemons answer both the way this file does: a
// loopback bind serves only requests for a loopback Host, and the admin routes refuse other origins.

// loopbackBind reports whether listen ("127.0.0.1:4321", "localhost:4321", "[::1]:4321") takes
// connections from this machine only.
func loopbackBind(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// isLoopbackHost reports whether a Host header names this machine by a loopback name or address:
// localhost and its subdomains (which resolve to loopback only, RFC 6761), 127.0.0.0/8 or ::1, with or
// without a port. An empty Host (HTTP/1.0) is no browser's.
func isLoopbackHost(host []byte) bool {
	if len(host) == 0 {
		return true
	}
	if host[0] == '[' { // [v6]:port
		end := bytes.IndexByte(host, ']')
		if end < 0 {
			return false
		}
		ip, err := netip.ParseAddr(string(host[1:end]))
		return err == nil && ip.IsLoopback()
	}
	if i := bytes.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	host = bytes.TrimSuffix(host, []byte{'.'})
	if lowerEq(host, "localhost") || (len(host) > len(".localhost") && lowerEq(host[len(host)-len(".localhost"):], ".localhost")) {
		return true
	}
	return isLoopbackIPv4(host)
}

// isLoopbackIPv4 reports whether b is a dotted-quad address in 127.0.0.0/8, without allocating: the
// Host of nearly every request to a loopback bind.
func isLoopbackIPv4(b []byte) bool {
	octets, n, digits := 0, 0, 0
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			if digits > 0 && n == 0 { // no leading zeros, as netip
				return false
			}
			n, digits = n*10+int(c-'0'), digits+1
			if n > 255 {
				return false
			}
		case c == '.' && digits > 0:
			if octets == 0 && n != 127 {
				return false
			}
			octets, n, digits = octets+1, 0, 0
		default:
			return false
		}
	}
	return octets == 3 && digits > 0
}

// sameOrigin reports whether origin (a request's Origin header) is the proxy's own as the request
// addressed it: http:// or https:// (a TLS terminator in front) followed by its Host.
func sameOrigin(origin, host []byte) bool {
	switch {
	case bytes.HasPrefix(origin, []byte("http://")):
		origin = origin[len("http://"):]
	case bytes.HasPrefix(origin, []byte("https://")):
		origin = origin[len("https://"):]
	default:
		return false // "null" (a sandboxed page, a file), or no scheme
	}
	return len(host) > 0 && bytes.EqualFold(origin, host)
}

// hostRefusal is the answer to a request for a foreign Host on a loopback bind, nil for the others.
func (s *Server) hostRefusal(ctx *fasthttp.RequestCtx) *pipeline.Error {
	if !s.loopback {
		return nil
	}
	host := ctx.Request.Header.Host()
	if isLoopbackHost(host) {
		return nil
	}
	shown := string(host[:min(len(host), 100)])
	return &pipeline.Error{Status: 403, Type: "invalid_request_error", Code: "host_forbidden",
		Message: "llmcache listens on a loopback address and answers requests for localhost, 127.0.0.1 or [::1] only " +
			"(a web page could reach it by DNS rebinding otherwise); this one was for Host " + shown +
			". To serve other names, listen on another address"}
}

// originRefusal refuses an admin request that a web page of another origin sent; tools send no Origin.
func originRefusal(ctx *fasthttp.RequestCtx) *pipeline.Error {
	origin := ctx.Request.Header.Peek("Origin")
	if origin == nil || sameOrigin(origin, ctx.Request.Header.Host()) {
		return nil
	}
	return &pipeline.Error{Status: 403, Type: "invalid_request_error", Code: "origin_forbidden",
		Message: "the admin API does not answer requests from web pages of another origin"}
}
