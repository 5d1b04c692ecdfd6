package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// connectProxy is a forward proxy that only speaks CONNECT, counting the tunnels it opens. It maps the
// host upstream.test to 127.0.0.1, so that an upstream URL need not be a loopback address (which is never
// proxied) and a direct call to it cannot succeed.
type connectProxy struct {
	ln       net.Listener
	connects atomic.Int64
	wg       sync.WaitGroup
}

func startConnectProxy(t *testing.T) *connectProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.tunnel(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return p
}

func (p *connectProxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *connectProxy) tunnel(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
		return
	}
	host, port, _ := net.SplitHostPort(req.Host)
	if host == "upstream.test" {
		host = "127.0.0.1"
	}
	up, err := net.Dial("tcp", net.JoinHostPort(host, port))
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer up.Close()
	p.connects.Add(1)
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, br); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
}

// TestE2EUseProxy: with use_proxy on, upstream calls (chat, embeddings, models) go through HTTP_PROXY by
// CONNECT, and NO_PROXY exempts a host; with it off, the proxy sees nothing and the unresolvable host
// fails. Run with either transport (the suite runs again through curl).
func TestE2EUseProxy(t *testing.T) {
	for _, c := range []struct {
		name     string
		useProxy bool
		noProxy  string
		via      bool // the proxy carries the calls and they succeed
	}{
		{"use_proxy=true", true, "", true},
		{"use_proxy=true/NO_PROXY", true, "upstream.test", false},
		{"use_proxy=false", false, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			proxy := startConnectProxy(t)
			p := newTestProxy(t, func(cfg *fileConfig) {
				cfg.UseProxy, cfg.MaxRetries = c.useProxy, 0
				_, port, _ := net.SplitHostPort(strings.TrimPrefix(cfg.APIEndpoints[0].URL, "http://"))
				cfg.APIEndpoints[0].URL = "http://upstream.test:" + port
				cfg.APIEndpoints[0].ConnectTimeoutSeconds = 2 // a resolver that does not answer must not stall the test
			})
			p.Env = map[string]string{"HTTP_PROXY": proxy.URL(), "HTTPS_PROXY": proxy.URL(), "NO_PROXY": c.noProxy}
			p.Restart() // the transport reads the environment at start
			chat, _ := p.Post("/v1/chat/completions", chatBody("through the proxy"))
			emb, _ := p.Post("/v1/embeddings", `{"model":"emb","input":"proxied"}`)
			models, _ := p.Get("/v1/models")
			for _, r := range []struct {
				what   string
				status int
			}{{"chat", chat.StatusCode}, {"embeddings", emb.StatusCode}, {"models", models.StatusCode}} {
				if c.via && r.status != 200 {
					t.Errorf("%s through the proxy: status %d, want 200", r.what, r.status)
				}
				if !c.via && r.status != 502 && r.status != 504 {
					t.Errorf("%s direct to an unresolvable host: status %d, want 502 (or 504 if the resolver stalls)", r.what, r.status)
				}
			}
			if n := proxy.connects.Load(); c.via && n == 0 || !c.via && n != 0 {
				t.Errorf("the proxy opened %d tunnels; want some only when calls go through it", n)
			}
			if c.via && p.Fake.Calls() < 3 {
				t.Errorf("the upstream saw %d calls through the proxy, want 3", p.Fake.Calls())
			}
		})
	}
}
