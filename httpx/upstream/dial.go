package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"llmcache/pipeline/wire"
)

// dialer opens the built-in client's connections to one endpoint: TCP to the upstream or to its proxy, a
// CONNECT tunnel through the proxy, then TLS with the upstream, all within the connect timeout.
type dialer struct {
	t         target
	tls       *tls.Config // with the upstream; nil for http://
	proxyTLS  *tls.Config // with an https:// proxy; nil otherwise
	connect   []byte      // the CONNECT request, Proxy-Authorization included; nil when direct
	connectTO time.Duration
	callTO    time.Duration // the whole call's timeout, to name it when it is the one that fired
	firstByte time.Duration
	netDialer net.Dialer
}

// newDialer makes the dialer of one endpoint; roots are the CAs its certificates are checked against (nil:
// the system's).
func newDialer(t target, ep *wire.Target, roots *x509.CertPool) *dialer {
	d := &dialer{t: t, connectTO: ep.ConnectTimeout, callTO: ep.Timeout, firstByte: ep.FirstByteTimeout}
	if t.isTLS {
		d.tls = &tls.Config{ServerName: t.url.Hostname(), RootCAs: roots, InsecureSkipVerify: ep.InsecureTLS}
	}
	if t.proxy == nil {
		return d
	}
	var b strings.Builder
	fmt.Fprintf(&b, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", t.addr, t.addr)
	if u := t.proxy.User; u != nil {
		pass, _ := u.Password()
		b.WriteString("Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pass)) + "\r\n")
	}
	b.WriteString("\r\n")
	d.connect = []byte(b.String())
	if t.proxy.Scheme == "https" {
		// As net/http does: the proxy's certificate is checked like the upstream's.
		d.proxyTLS = &tls.Config{ServerName: t.proxy.Hostname(), RootCAs: roots, InsecureSkipVerify: ep.InsecureTLS}
	}
	return d
}

// dial is the HostClient's DialTimeout. remaining is what is left of the call's deadline (0 = none), which
// bounds the dial when it comes before the connect timeout. Errors wrap the pipeline's kinds already, so
// callError passes them on as they are.
func (d *dialer) dial(addr string, remaining time.Duration) (net.Conn, error) {
	limit, fired := d.connectTO, fmt.Sprintf("connect timeout %s", d.connectTO)
	if remaining > 0 && remaining < limit {
		limit, fired = remaining, fmt.Sprintf("call exceeded timeout %s", d.callTO)
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	conn, err := d.open(ctx, addr)
	if err == nil {
		return &timedConn{Conn: conn, firstByte: d.firstByte}, nil
	}
	if ctx.Err() != nil || isTimeout(err) {
		return nil, fmt.Errorf("%w: %s: %v", wire.ErrTimeout, fired, err)
	}
	return nil, fmt.Errorf("%w: %v", wire.ErrUnreachable, err)
}

func (d *dialer) open(ctx context.Context, addr string) (net.Conn, error) {
	var conn net.Conn
	var err error
	if d.t.proxy == nil {
		conn, err = d.netDialer.DialContext(ctx, "tcp", addr)
	} else {
		conn, err = d.tunnel(ctx, addr)
	}
	if err != nil || d.tls == nil {
		return conn, err
	}
	tc := tls.Client(conn, d.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}

// tunnel asks the proxy to CONNECT to addr. http:// upstreams go through the tunnel too: one code path,
// connections kept alive through the proxy, and fasthttp cannot write absolute-form requests anyway.
func (d *dialer) tunnel(ctx context.Context, addr string) (net.Conn, error) {
	proxy := d.t.proxy.Redacted()
	conn, err := d.netDialer.DialContext(ctx, "tcp", proxyAddr(d.t.proxy))
	if err != nil {
		return nil, fmt.Errorf("cannot reach proxy %s: %w", proxy, err)
	}
	if d.proxyTLS != nil {
		tc := tls.Client(conn, d.proxyTLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("cannot reach proxy %s: %w", proxy, err)
		}
		conn = tc
	}
	if err := d.handshakeProxy(ctx, conn, addr); err != nil {
		conn.Close()
		return nil, fmt.Errorf("proxy %s: %w", proxy, err)
	}
	return conn, nil
}

func (d *dialer) handshakeProxy(ctx context.Context, conn net.Conn, addr string) error {
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	if _, err := conn.Write(d.connect); err != nil {
		return fmt.Errorf("cannot send CONNECT %s: %w", addr, err)
	}
	// A proxy's answer is short; the limit stops a misbehaving one from feeding an endless answer.
	br := bufio.NewReaderSize(io.LimitReader(conn, 64<<10), 1024)
	tp := textproto.NewReader(br)
	status, err := tp.ReadLine()
	if err != nil {
		return fmt.Errorf("no answer to CONNECT %s: %w", addr, err)
	}
	if _, err := tp.ReadMIMEHeader(); err != nil {
		return fmt.Errorf("bad answer to CONNECT %s: %w", addr, err)
	}
	code := 0
	if f := strings.Fields(status); len(f) >= 2 && strings.HasPrefix(f[0], "HTTP/") {
		code, _ = strconv.Atoi(f[1])
	}
	if code < 200 || code > 299 {
		return fmt.Errorf("CONNECT %s answered %q", addr, status)
	}
	if br.Buffered() > 0 {
		// Upstreams speak only after the client (ClientHello, request), so these bytes are the proxy's; they
		// would corrupt the stream, and br is dropped here.
		return fmt.Errorf("CONNECT %s: proxy sent bytes after its answer", addr)
	}
	return conn.SetDeadline(time.Time{})
}

// timedConn gives fasthttp's one read deadline a first-byte stage. fasthttp calls SetReadDeadline with the
// whole call's deadline after writing the request and before reading the answer; until the answer's first
// byte arrives the conn holds the earlier first-byte deadline instead, then the call's, which fasthttp leaves
// in place while a streamed body is read, so the whole-call timeout covers the body too.
type timedConn struct {
	net.Conn
	firstByte time.Duration

	// Used only by the goroutine running a call on this conn; fasthttp's pool hands the conn from call to
	// call under a lock, which orders them.
	deadline time.Time // the call's, restored at the first byte
	waiting  bool      // armed by SetReadDeadline; no byte of the answer yet
}

func (c *timedConn) SetReadDeadline(t time.Time) error {
	c.deadline, c.waiting = t, true
	first := time.Now().Add(c.firstByte)
	if !t.IsZero() && t.Before(first) {
		first = t
	}
	return c.Conn.SetReadDeadline(first)
}

func (c *timedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.waiting {
		c.waiting = false
		if derr := c.Conn.SetReadDeadline(c.deadline); err == nil {
			err = derr
		}
	}
	return n, err
}

// Handshake tells fasthttp that the conn is TLS already: dial made the handshake, within the connect
// timeout and through the proxy's tunnel when there is one.
func (c *timedConn) Handshake() error { return nil }

// isTimeout also catches fasthttp.ErrTimeout, which has Timeout but not the rest of net.Error.
func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &te) && te.Timeout())
}
