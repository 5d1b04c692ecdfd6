package upstream

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"llmcache/pipeline/wire"
)

// transport is what both transports offer main.
type transport interface {
	Do(req *wire.Request, resp *wire.Response) error
	Stream(req *wire.Request, sink wire.StreamSink) error
	Check(endpoints []wire.Target) error
	CloseIdle(t *wire.Target)
}

// transports is the table every contract test runs over.
var transports = []struct {
	name string
	new  func(t *testing.T, opts Options) transport
}{
	{"builtin", func(t *testing.T, opts Options) transport { return NewWithOptions(opts) }},
	{"curl", func(t *testing.T, opts Options) transport {
		c, err := NewCurl(opts)
		if err != nil {
			t.Skip(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}},
}

// eachTransport runs f as a parallel subtest per transport.
func eachTransport(t *testing.T, f func(t *testing.T, newT func(Options) transport)) {
	t.Helper()
	for _, tc := range transports {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f(t, func(opts Options) transport { return tc.new(t, opts) })
		})
	}
}

// endpoint returns an endpoint with generous timeouts, long enough for curl to start and fail a TLS
// handshake under -race among parallel tests on a loaded machine; tests shorten the one they exercise.
func endpoint(url string) *wire.Target {
	return &wire.Target{Name: url, URL: url, ConnectTimeout: 30 * time.Second, FirstByteTimeout: 30 * time.Second, Timeout: time.Minute}
}

func request(ep *wire.Target, path string) *wire.Request {
	return &wire.Request{
		Target: ep, Method: "POST", URL: ep.URL + path,
		Header: [][2]string{{"Authorization", "Bearer sk-test"}},
		Body:   []byte(`{"model":"m","messages":[]}`),
	}
}

// sink records a streamed answer; onData, when set, sees each piece as it arrives.
type sink struct {
	mu          sync.Mutex
	headers     int
	status      int
	contentType string
	retryAfter  string
	pieces      []string
	onData      func(p []byte)
}

func (s *sink) Header(status int, contentType, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.headers++
	s.status, s.contentType, s.retryAfter = status, contentType, retryAfter
}

func (s *sink) Data(p []byte) {
	s.mu.Lock()
	s.pieces = append(s.pieces, string(p))
	f := s.onData
	s.mu.Unlock()
	if f != nil {
		f(p)
	}
}

func (s *sink) body() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.pieces, "")
}

// wantKind fails unless err wraps kind; the message is checked to hold each of subs.
func wantKind(t *testing.T, err, kind error, subs ...string) {
	t.Helper()
	t.Logf("error: %v", err)
	if !errors.Is(err, kind) {
		t.Fatalf("error = %v, want one wrapping %q", err, kind)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
}

// blockingServer starts a server whose handler h may block on release, which closes before the server does,
// so that Close never waits on a handler a test left hanging.
func blockingServer(t *testing.T, h func(w http.ResponseWriter, r *http.Request, release <-chan struct{})) *httptest.Server {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h(w, r, release) }))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first
	return srv
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// testCA is a certificate authority and a leaf it signed for 127.0.0.1, localhost and upstream.test.
type testCA struct {
	leaf   tls.Certificate
	caFile string // the CA's PEM
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "llmcache test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "upstream.test"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost", "upstream.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &testCA{leaf: tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}, caFile: caFile}
}

// tlsServer starts an HTTPS server presenting the CA's leaf.
func (ca *testCA) tlsServer(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.leaf}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes the tests expect to fail
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// env is a fake environment for Options.Getenv.
func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// within fails when f ran longer than limit: timeout tests bound time generously, never tightly.
func within(t *testing.T, limit time.Duration, f func() error) error {
	t.Helper()
	start := time.Now()
	err := f()
	if d := time.Since(start); d > limit {
		t.Errorf("call took %s, want under %s", d, limit)
	}
	return err
}
