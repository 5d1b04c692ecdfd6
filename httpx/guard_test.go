package httpx

import (
	"testing"

	"github.com/valyala/fasthttp"
)

func TestLoopbackBind(t *testing.T) {
	for listen, want := range map[string]bool{
		"127.0.0.1:4321": true, "127.0.0.2:0": true, "localhost:4321": true, "[::1]:4321": true,
		"0.0.0.0:4321": false, ":4321": false, "[::]:4321": false, "192.168.1.5:4321": false, "": false, "proxy.lan:80": false,
	} {
		if got := loopbackBind(listen); got != want {
			t.Errorf("loopbackBind(%q) = %v, want %v", listen, got, want)
		}
	}
}

func TestIsLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"": true, "localhost": true, "localhost:4321": true, "LocalHost:1": true, "localhost.": true, "app.localhost:80": true,
		"127.0.0.1": true, "127.0.0.1:4321": true, "127.255.255.254:1": true, "[::1]:4321": true, "[::1]": true,
		"[0:0:0:0:0:0:0:1]:80": true, "[::ffff:127.0.0.1]:80": true,
		"evil.example": false, "evil.example:4321": false, "localhost.evil.example": false, "evillocalhost": false,
		"127.0.0.1.evil.example": false, "128.0.0.1": false, "10.0.0.1:4321": false, "127.0.0": false, "127.0.0.1.": true,
		"127.0.0.256": false, "127.00.0.1": false, "[::2]:80": false, "[::1": false, "::1": false, "0x7f.0.0.1": false,
	} {
		if got := isLoopbackHost([]byte(host)); got != want {
			t.Errorf("isLoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestSameOrigin(t *testing.T) {
	for _, c := range []struct {
		origin, host string
		want         bool
	}{
		{"http://127.0.0.1:4321", "127.0.0.1:4321", true},
		{"https://cache.lan", "cache.lan", true},
		{"http://LOCALHOST:4321", "localhost:4321", true},
		{"http://127.0.0.1:4321", "localhost:4321", false},
		{"http://127.0.0.1", "127.0.0.1:4321", false},
		{"null", "127.0.0.1:4321", false},
		{"https://evil.example", "127.0.0.1:4321", false},
		{"http://", "", false},
	} {
		if got := sameOrigin([]byte(c.origin), []byte(c.host)); got != c.want {
			t.Errorf("sameOrigin(%q, %q) = %v, want %v", c.origin, c.host, got, c.want)
		}
	}
}

// A proxy that listens on all interfaces is reached by whatever names point at the machine: no Host check.
func TestOtherHostsServedOffLoopback(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:4321", "127.0.0.1:4321"} {
		s := New(Config{Listen: listen}, nil, func() error { return nil })
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI("/healthz")
		ctx.Request.Header.SetHost("cache.example.com")
		s.srv.Handler(&ctx)
		want := 200
		if listen == "127.0.0.1:4321" {
			want = 403
		}
		if got := ctx.Response.StatusCode(); got != want {
			t.Errorf("listen %s, Host cache.example.com: %d, want %d", listen, got, want)
		}
	}
}
