package upstream

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"

	"golang.org/x/net/http/httpproxy"

	"llmcache/pipeline/wire"
)

// Options configure both transports.
type Options struct {
	// UseProxy makes calls honour HTTPS_PROXY, HTTP_PROXY and NO_PROXY (or their lowercase forms) with Go's
	// usual semantics: localhost and loopback addresses are never proxied. False: always direct, whatever
	// the environment says.
	UseProxy bool
	// Getenv reads the proxy variables; nil means os.Getenv. Tests set it so they need not touch the
	// process environment, which parallel tests share.
	Getenv func(string) string
}

// proxyFunc returns the proxy decision for an upstream URL: nil means direct. The environment is read once,
// here, as net/http does.
func (o Options) proxyFunc() func(*url.URL) (*url.URL, error) {
	if !o.UseProxy {
		return func(*url.URL) (*url.URL, error) { return nil, nil }
	}
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	first := func(names ...string) string { // lowercase first, as httpproxy.FromEnvironment does
		for _, n := range names {
			if v := getenv(n); v != "" {
				return v
			}
		}
		return ""
	}
	cfg := httpproxy.Config{
		HTTPProxy:  first("http_proxy", "HTTP_PROXY"),
		HTTPSProxy: first("https_proxy", "HTTPS_PROXY"),
		NoProxy:    first("no_proxy", "NO_PROXY"),
		CGI:        getenv("REQUEST_METHOD") != "",
	}
	return cfg.ProxyFunc()
}

// target is what both transports need to know about an endpoint's URL, decided once per endpoint.
type target struct {
	url   *url.URL
	addr  string   // host:port, the port filled in from the scheme
	isTLS bool     // https
	proxy *url.URL // nil = direct; else an http:// or https:// proxy reached by CONNECT
}

// resolveTarget parses an upstream URL and makes the proxy decision for it.
func resolveTarget(raw string, proxy func(*url.URL) (*url.URL, error)) (target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, fmt.Errorf("bad endpoint URL %q: %w", raw, err)
	}
	t := target{url: u, isTLS: u.Scheme == "https"}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return target{}, fmt.Errorf("bad endpoint URL %q: scheme must be http or https", raw)
	case u.Hostname() == "":
		return target{}, fmt.Errorf("bad endpoint URL %q: no host", raw)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if t.isTLS {
			port = "443"
		}
	}
	t.addr = net.JoinHostPort(u.Hostname(), port)
	if t.proxy, err = proxy(u); err != nil {
		return target{}, fmt.Errorf("cannot choose a proxy for %q (check HTTPS_PROXY/HTTP_PROXY/NO_PROXY): %w", raw, err)
	}
	if t.proxy != nil && t.proxy.Scheme != "http" && t.proxy.Scheme != "https" {
		// SOCKS would need a second dialer in each transport; nobody has asked for it.
		return target{}, fmt.Errorf("proxy %q for %q: only http:// and https:// proxies are supported", t.proxy.Redacted(), raw)
	}
	return t, nil
}

// proxyAddr is the proxy's host:port, the port filled in from its scheme.
func proxyAddr(p *url.URL) string {
	if p.Port() != "" {
		return p.Host
	}
	if p.Scheme == "https" {
		return net.JoinHostPort(p.Hostname(), "443")
	}
	return net.JoinHostPort(p.Hostname(), "80")
}

// caFiles loads each ca_file once for the built-in client, at Check time when main calls it, so that a bad
// file stops the server at start instead of failing every call.
type caFiles struct {
	mu    sync.Mutex
	pools map[string]*x509.CertPool // by path; guarded by mu
}

// pool returns the system roots plus the certificates in file.
func (c *caFiles) pool(file string) (*x509.CertPool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.pools[file]; p != nil {
		return p, nil
	}
	pem, err := readCAFile(file)
	if err != nil {
		return nil, err
	}
	p, err := x509.SystemCertPool()
	if err != nil {
		p = x509.NewCertPool() // no system roots here (rare); the file alone is still worth trusting
	}
	p.AppendCertsFromPEM(pem) // readCAFile checked that it holds a certificate
	if c.pools == nil {
		c.pools = make(map[string]*x509.CertPool)
	}
	c.pools[file] = p
	return p, nil
}

// readCAFile reads a PEM file and checks that it holds at least one certificate.
func readCAFile(file string) ([]byte, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cannot read ca_file: %w", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %q holds no PEM certificate", file)
	}
	return pem, nil
}

// checkEndpoints runs check on every endpoint and names the endpoint in each error.
func checkEndpoints(endpoints []wire.Target, check func(ep *wire.Target) error) error {
	var errs []error
	for i := range endpoints {
		if err := check(&endpoints[i]); err != nil {
			name := endpoints[i].Name
			if name == "" {
				name = endpoints[i].URL // main may check the endpoints before their defaults are applied
			}
			errs = append(errs, fmt.Errorf("endpoint %q: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
