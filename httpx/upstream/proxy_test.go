package upstream

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"llmcache/pipeline/wire"
)

// testProxy is a forward proxy that only tunnels (CONNECT), counting what it is asked. It maps upstream.test
// to 127.0.0.1, so that tests can name an upstream that is not a loopback address: those are never proxied.
type testProxy struct {
	ln       net.Listener
	scheme   string        // http, or https when clients reach it by TLS
	userinfo *url.Userinfo // the credentials it demands

	mu       sync.Mutex
	connects []string // CONNECT targets; guarded by mu
	auths    []string // their Proxy-Authorization headers
	others   int      // requests that were not CONNECT
	conns    map[net.Conn]struct{}
	closed   bool

	wg sync.WaitGroup
}

func startProxy(t *testing.T) *testProxy { return startProxyTLS(t, nil) }

// startProxyTLS starts a proxy that clients reach by TLS, with the CA's leaf, unless ca is nil.
func startProxyTLS(t *testing.T, ca *testCA) *testProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	scheme := "http"
	if ca != nil {
		ln, scheme = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{ca.leaf}}), "https"
	}
	p := &testProxy{ln: ln, scheme: scheme, userinfo: url.UserPassword("u", "p@ss:1"), conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// URL is the proxy's URL with its credentials, as a user would write it in HTTPS_PROXY.
func (p *testProxy) URL() string {
	return (&url.URL{Scheme: p.scheme, User: p.userinfo, Host: p.ln.Addr().String()}).String()
}

func (p *testProxy) counts() (connects []string, auths []string, others int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.connects...), append([]string(nil), p.auths...), p.others
}

// track registers c so that close can end its tunnel; false when the proxy is closing.
func (p *testProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *testProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *testProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		go p.handle(c)
	}
}

func (p *testProxy) handle(c net.Conn) {
	defer p.wg.Done()
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	auth := req.Header.Get("Proxy-Authorization")
	p.mu.Lock()
	if req.Method != http.MethodConnect {
		p.others++
	} else {
		p.connects = append(p.connects, req.Host)
		p.auths = append(p.auths, auth)
	}
	p.mu.Unlock()
	if req.Method != http.MethodConnect {
		io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return
	}
	pass, _ := p.userinfo.Password()
	if auth != "Basic "+base64.StdEncoding.EncodeToString([]byte(p.userinfo.Username()+":"+pass)) {
		io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n")
		return
	}
	host, port, err := net.SplitHostPort(req.Host)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
		return
	}
	if host == "upstream.test" {
		host = "127.0.0.1"
	}
	up, err := net.DialTimeout("tcp", net.JoinHostPort(host, port), 30*time.Second)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	if !p.track(up) {
		return
	}
	defer up.Close()
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	var copying sync.WaitGroup
	copying.Go(func() {
		io.Copy(up, br) // br may hold bytes the client sent right after CONNECT
		up.Close()
		c.Close()
	})
	io.Copy(c, up)
	up.Close()
	c.Close()
	copying.Wait()
}

// upstreamFor starts an upstream answering "ok" and returns its URL under the name upstream.test.
func upstreamFor(t *testing.T, scheme string, ca *testCA) string {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	var addr string
	if scheme == "https" {
		addr = ca.tlsServer(t, h).Listener.Addr().String()
	} else {
		addr = blockingServer(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) { h(w, r) }).Listener.Addr().String()
	}
	_, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf("%s://upstream.test:%s", scheme, port)
}

func TestProxyCarriesCalls(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	for _, c := range []struct{ scheme, proxyScheme string }{{"http", "http"}, {"https", "http"}, {"https", "https"}} {
		t.Run(c.scheme+"-via-"+c.proxyScheme, func(t *testing.T) {
			t.Parallel()
			eachTransport(t, func(t *testing.T, newT func(Options) transport) {
				proxy := startProxy(t)
				if c.proxyScheme == "https" {
					proxy = startProxyTLS(t, ca) // checked against ca_file, like the upstream
				}
				target := upstreamFor(t, c.scheme, ca)
				// Upper case for one scheme, lower case for the other: both are honoured.
				getenv := env("HTTP_PROXY", proxy.URL(), "https_proxy", proxy.URL())
				tr := newT(Options{UseProxy: true, Getenv: getenv})
				ep := endpoint(target)
				ep.CAFile = ca.caFile
				if err := tr.Check([]wire.Target{*ep}); err != nil {
					t.Fatal(err)
				}
				var resp wire.Response
				if err := tr.Do(request(ep, "/v1/chat/completions"), &resp); err != nil || resp.Status != 200 || string(resp.Body) != "ok" {
					t.Fatalf("Do through the proxy: %v %d %q", err, resp.Status, resp.Body)
				}
				s := &sink{}
				if err := tr.Stream(request(ep, "/v1/chat/completions"), s); err != nil || s.body() != "ok" {
					t.Fatalf("Stream through the proxy: %v %q", err, s.body())
				}
				connects, auths, others := proxy.counts()
				u, _ := url.Parse(target)
				if len(connects) == 0 || others != 0 {
					t.Fatalf("proxy saw CONNECT %q and %d other requests, want CONNECTs only", connects, others)
				}
				for i := range connects {
					if connects[i] != u.Host {
						t.Errorf("CONNECT %q, want %q", connects[i], u.Host)
					}
					if want := "Basic " + base64.StdEncoding.EncodeToString([]byte("u:p@ss:1")); auths[i] != want {
						t.Errorf("Proxy-Authorization %q, want %q", auths[i], want)
					}
				}
			})
		})
	}
}

// wantDirect checks a call to upstream.test went direct: it cannot resolve, so it fails, and the proxy saw
// nothing.
func wantDirect(t *testing.T, tr transport, proxy *testProxy, target string) {
	t.Helper()
	ep := endpoint(target)
	ep.ConnectTimeout = 2 * time.Second // in case this network's DNS hangs rather than answers
	err := tr.Do(request(ep, "/v1/models"), &wire.Response{})
	if !errors.Is(err, wire.ErrUnreachable) && !errors.Is(err, wire.ErrTimeout) {
		t.Errorf("direct call to upstream.test: %v, want it unreachable", err)
	}
	if connects, _, others := proxy.counts(); len(connects)+others != 0 {
		t.Errorf("proxy saw %q and %d other requests, want nothing", connects, others)
	}
}

func TestNoProxyGoesDirect(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(t *testing.T, newT func(Options) transport) {
		proxy := startProxy(t)
		tr := newT(Options{UseProxy: true, Getenv: env("HTTP_PROXY", proxy.URL(), "HTTPS_PROXY", proxy.URL(), "NO_PROXY", "example.com,upstream.test")})
		wantDirect(t, tr, proxy, "http://upstream.test:1")
		wantDirect(t, tr, proxy, "https://upstream.test:1")
	})
}

func TestUseProxyFalseIgnoresTheEnvironment(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(t *testing.T, newT func(Options) transport) {
		proxy := startProxy(t)
		tr := newT(Options{UseProxy: false, Getenv: env("HTTP_PROXY", proxy.URL(), "HTTPS_PROXY", proxy.URL())})
		wantDirect(t, tr, proxy, "http://upstream.test:1")
		wantDirect(t, tr, proxy, "https://upstream.test:1")
	})
}

func TestLoopbackIsNeverProxied(t *testing.T) {
	t.Parallel()
	srv := blockingServer(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) { io.WriteString(w, "ok") })
	eachTransport(t, func(t *testing.T, newT func(Options) transport) {
		proxy := startProxy(t)
		tr := newT(Options{UseProxy: true, Getenv: env("HTTP_PROXY", proxy.URL())})
		var resp wire.Response
		if err := tr.Do(request(endpoint(srv.URL), "/"), &resp); err != nil || string(resp.Body) != "ok" {
			t.Fatalf("Do: %v %q", err, resp.Body)
		}
		if connects, _, others := proxy.counts(); len(connects)+others != 0 {
			t.Errorf("proxy saw %q and %d other requests, want nothing", connects, others)
		}
	})
}

func TestProxyRefusingIsUnreachable(t *testing.T) {
	t.Parallel()
	target := upstreamFor(t, "http", nil)
	eachTransport(t, func(t *testing.T, newT func(Options) transport) {
		proxy := startProxy(t)
		wrong := strings.Replace(proxy.URL(), "u:", "intruder:", 1)
		tr := newT(Options{UseProxy: true, Getenv: env("HTTP_PROXY", wrong)})
		err := tr.Do(request(endpoint(target), "/"), &wire.Response{})
		wantKind(t, err, wire.ErrUnreachable, "407")
		if strings.Contains(err.Error(), "p@ss") || strings.Contains(err.Error(), "p%40ss") {
			t.Errorf("error %q shows the proxy password", err)
		}
	})
}
