package upstream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"llmcache/pipeline/wire"
)

// Curl is the use_curl transport: every call runs the curl binary, for networks where only curl is set up.
// It sends what Client sends and maps errors the same way. Nothing secret reaches curl's command line, which
// any local user can read in ps: headers, URL and proxy credentials go in a config file curl reads from a
// pipe (fd 3), the body through stdin.
type Curl struct {
	bin    string
	proxy  func(*url.URL) (*url.URL, error) // the same decision Client makes, passed to curl explicitly
	getenv func(string) string
	env    []string // the process environment without proxy variables, so curl never makes its own decision

	mu      sync.Mutex
	bundles map[string]string // ca_file → temp file holding the system roots plus it; guarded by mu
}

// curlArgs is curl's whole command line. -q must come first: it keeps ~/.curlrc out.
var curlArgs = []string{"-q", "--config", "/dev/fd/3"}

// NewCurl returns the curl transport, or an error when curl is not in PATH.
func NewCurl(opts Options) (*Curl, error) { return newCurl(opts, "curl") }

func newCurl(opts Options, name string) (*Curl, error) {
	bin, err := exec.LookPath(name)
	if err != nil {
		return nil, fmt.Errorf("use_curl = true but no curl binary found in PATH: %w", err)
	}
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	c := &Curl{bin: bin, proxy: opts.proxyFunc(), getenv: getenv, bundles: make(map[string]string)}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(name) {
		case "http_proxy", "https_proxy", "all_proxy", "no_proxy":
		default:
			c.env = append(c.env, kv)
		}
	}
	return c, nil
}

// Check validates each endpoint's URL and proxy settings and builds the CA bundle of each ca_file, so that a
// bad file stops the server at start.
func (c *Curl) Check(endpoints []wire.Target) error {
	return checkEndpoints(endpoints, func(ep *wire.Target) error {
		if _, err := resolveTarget(ep.URL, c.proxy); err != nil {
			return err
		}
		if ep.CAFile != "" {
			_, err := c.bundle(ep.CAFile)
			return err
		}
		return nil
	})
}

// CloseIdle does nothing: curl keeps no connection between calls. Each call is a curl process of its own,
// which opens its connection (and its proxy tunnel and TLS session) and closes it when it exits, so a call
// never lands on a connection from before an upstream restart, and there is nothing idle to drop.
func (c *Curl) CloseIdle(*wire.Target) {}

// Close removes the CA bundles' temp files.
func (c *Curl) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for file, path := range c.bundles {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		delete(c.bundles, file)
	}
	return errors.Join(errs...)
}

// bundle returns a PEM file holding the system roots and the certificates of caFile. curl's --cacert replaces
// its default roots rather than adding to them, so the system bundle is copied in first; a temp file because
// OpenSSL reads the file on every call, by path.
func (c *Curl) bundle(caFile string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if path, ok := c.bundles[caFile]; ok {
		if _, err := os.Stat(path); err == nil {
			return path, nil
		}
		// Gone: tmp cleaners age files out (systemd-tmpfiles after 10 days), so write it again.
	}
	pem, err := readCAFile(caFile)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp("", "llmcache-ca-*.pem")
	if err != nil {
		return "", fmt.Errorf("cannot write the CA bundle for ca_file %q: %w", caFile, err)
	}
	_, err = f.Write(append(append(c.systemRoots(), '\n'), pem...))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("cannot write the CA bundle for ca_file %q: %w", caFile, err)
	}
	c.bundles[caFile] = f.Name()
	return f.Name(), nil
}

// systemRoots reads the system's PEM bundle: where curl's environment points, else where Go looks on Linux
// and the BSDs. None found (macOS, whose curl uses the keychain): the ca_file alone is trusted then.
func (c *Curl) systemRoots() []byte {
	paths := []string{
		c.getenv("CURL_CA_BUNDLE"),
		c.getenv("SSL_CERT_FILE"),
		"/etc/ssl/certs/ca-certificates.crt",                // Debian, Ubuntu, Gentoo, Arch
		"/etc/pki/tls/certs/ca-bundle.crt",                  // Fedora, RHEL 6
		"/etc/ssl/ca-bundle.pem",                            // openSUSE
		"/etc/pki/tls/cacert.pem",                           // OpenELEC
		"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // CentOS, RHEL 7
		"/etc/ssl/cert.pem",                                 // Alpine, the BSDs
	}
	for _, p := range paths {
		if p == "" {
			continue
		}
		if b, err := os.ReadFile(p); err == nil && len(b) > 0 {
			return b
		}
	}
	return nil
}

// Do implements pipeline's Transport.
func (c *Curl) Do(req *wire.Request, resp *wire.Response) error {
	r, err := c.start(req, false)
	if err != nil {
		return err
	}
	status, contentType, retryAfter, length, err := r.head()
	if err != nil {
		return r.finish(err)
	}
	if length > maxResponseBytes {
		return r.finish(fmt.Errorf("answer larger than %d MiB", maxResponseBytes>>20))
	}
	// length+1 so that the read which meets EOF needs no larger buffer.
	body := make([]byte, 0, max(length, 0)+1)
	for {
		if len(body) == cap(body) {
			// Doubling, but never past the limit: an oversized answer costs no more than the limit.
			grown := make([]byte, len(body), min(max(2*cap(body), 4096), maxResponseBytes+1))
			copy(grown, body)
			body = grown
		}
		n, err := r.br.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if len(body) > maxResponseBytes {
			return r.finish(fmt.Errorf("answer larger than %d MiB", maxResponseBytes>>20))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return r.finish(err)
		}
	}
	if err := r.finish(nil); err != nil {
		return err // the answer is complete only when curl says so
	}
	resp.Status, resp.ContentType, resp.RetryAfter, resp.Body = status, contentType, retryAfter, body
	return nil
}

// Stream implements pipeline's Transport. curl runs with --no-buffer, so each piece reaches the sink as it
// arrives.
func (c *Curl) Stream(req *wire.Request, sink wire.StreamSink) error {
	r, err := c.start(req, true)
	if err != nil {
		return err
	}
	status, contentType, retryAfter, _, err := r.head()
	if err != nil {
		return r.finish(err)
	}
	sink.Header(status, contentType, retryAfter)
	bp := streamBufs.Get().(*[]byte)
	defer streamBufs.Put(bp)
	buf := *bp
	for {
		n, err := r.br.Read(buf)
		if n > 0 {
			sink.Data(buf[:n])
		}
		if err == io.EOF {
			return r.finish(nil) // curl's exit status tells whether the body broke off
		}
		if err != nil {
			return r.finish(err)
		}
	}
}

// curlRun is one running curl.
type curlRun struct {
	ep       *wire.Target
	cmd      *exec.Cmd
	cancel   context.CancelFunc
	out      *os.File // curl's stdout: the answer's header blocks (--include), then its body
	br       *bufio.Reader
	writer   sync.WaitGroup // writes the config into fd 3
	stderr   prefixBuffer
	start    time.Time
	deadline time.Time // the whole call's
	killed   bool      // by us, for a timeout or a read error
	timeout  string    // which of our deadlines made us kill curl
}

// curlGrace is how long after the call's deadline a curl that ignored its --max-time gets killed.
const curlGrace = 2 * time.Second

func (c *Curl) start(req *wire.Request, stream bool) (*curlRun, error) {
	ep := req.Target
	t, err := resolveTarget(req.URL, c.proxy)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", wire.ErrUnreachable, err)
	}
	var bundle string
	if ep.CAFile != "" && !ep.InsecureTLS {
		if bundle, err = c.bundle(ep.CAFile); err != nil {
			return nil, fmt.Errorf("%w: %v", wire.ErrUnreachable, err)
		}
	}
	cfg, err := curlConfig(req, t, bundle, stream)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", wire.ErrUnreachable, err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%w: cannot run curl: %v", wire.ErrUnreachable, err)
	}
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("%w: cannot run curl: %v", wire.ErrUnreachable, err)
	}
	r := &curlRun{ep: ep, out: outR, start: time.Now()}
	r.deadline = r.start.Add(ep.Timeout)
	ctx, cancel := context.WithDeadline(context.Background(), r.deadline.Add(curlGrace))
	r.cancel = cancel
	r.cmd = exec.CommandContext(ctx, c.bin, curlArgs...)
	r.cmd.Env = c.env
	r.cmd.Stdout = outW
	r.cmd.Stderr = &r.stderr
	r.cmd.ExtraFiles = []*os.File{cfgR} // fd 3
	r.cmd.WaitDelay = time.Second
	if len(req.Body) > 0 {
		r.cmd.Stdin = bytes.NewReader(req.Body)
	}
	err = r.cmd.Start()
	outW.Close() // curl holds its copies; ours would hide its exit from the reads below
	cfgR.Close()
	if err != nil {
		cancel()
		outR.Close()
		cfgW.Close()
		return nil, fmt.Errorf("%w: cannot run curl: %v", wire.ErrUnreachable, err)
	}
	r.writer.Go(func() {
		// A curl that dies before reading it makes this fail with EPIPE, which finish's exit status explains.
		_, _ = cfgW.Write(cfg)
		cfgW.Close()
	})
	// curl cannot say when it has sent the request, so the first-byte deadline counts from its start,
	// connect and TLS included.
	first := r.start.Add(ep.FirstByteTimeout)
	if r.deadline.Before(first) {
		first = r.deadline
	}
	if err := outR.SetReadDeadline(first); err != nil {
		return nil, r.finish(err)
	}
	r.br = bufio.NewReaderSize(outR, streamChunk)
	return r, nil
}

// errNoHead marks a curl output that ended before the answer's headers: curl's exit status says why.
var errNoHead = errors.New("curl gave no answer")

// head reads the header blocks curl prints with --include up to the final one, skipping 1xx blocks (curl
// prints no CONNECT blocks, thanks to --suppress-connect-headers). length is Content-Length, or -1.
func (r *curlRun) head() (status int, contentType, retryAfter string, length int, err error) {
	for total := 0; ; {
		status, length = 0, -1
		for first := true; ; first = false {
			line, err := r.br.ReadSlice('\n')
			if errors.Is(err, io.EOF) {
				return 0, "", "", 0, errNoHead
			}
			if err != nil {
				return 0, "", "", 0, fmt.Errorf("cannot read the answer's headers: %w", err)
			}
			if total += len(line); total > 1<<20 {
				return 0, "", "", 0, errors.New("the answer's headers exceed 1 MiB")
			}
			line = bytes.TrimRight(line, "\r\n")
			if first {
				// "HTTP/1.1 200 OK", "HTTP/2 200"
				f := bytes.Fields(line)
				if len(f) < 2 || !bytes.HasPrefix(f[0], []byte("HTTP/")) {
					return 0, "", "", 0, fmt.Errorf("bad status line %q", line)
				}
				if status, err = strconv.Atoi(string(f[1])); err != nil || status < 100 || status > 999 {
					return 0, "", "", 0, fmt.Errorf("bad status line %q", line)
				}
				continue
			}
			if len(line) == 0 {
				break
			}
			name, value, ok := bytes.Cut(line, []byte(":"))
			if !ok {
				continue
			}
			value = bytes.TrimSpace(value)
			switch {
			case bytes.EqualFold(name, []byte("Content-Type")):
				contentType = string(value)
			case bytes.EqualFold(name, []byte("Retry-After")):
				retryAfter = string(value)
			case bytes.EqualFold(name, []byte("Content-Length")):
				if n, err := strconv.Atoi(string(value)); err == nil && n >= 0 {
					length = n
				}
			}
		}
		if status >= 200 || status == 101 {
			break
		}
		contentType, retryAfter = "", "" // an interim block's headers are not the answer's
	}
	// From here curl's --max-time bounds the call; this deadline only catches a curl that ignores it.
	if err := r.out.SetReadDeadline(r.deadline.Add(curlGrace)); err != nil {
		return 0, "", "", 0, err
	}
	return status, contentType, retryAfter, length, nil
}

// finish waits for curl and releases what the run holds. readErr is what stopped the reading (nil: the
// output ended). The error wraps the pipeline's kinds.
func (r *curlRun) finish(readErr error) error {
	if readErr != nil && readErr != errNoHead {
		if errors.Is(readErr, os.ErrDeadlineExceeded) {
			switch {
			case time.Now().Before(r.deadline):
				r.timeout = fmt.Sprintf("no first byte within %s", r.ep.FirstByteTimeout)
			default:
				r.timeout = fmt.Sprintf("call exceeded timeout %s", r.ep.Timeout)
			}
		}
		r.killed = true
		r.cancel()
	}
	waitErr := r.cmd.Wait()
	if errors.Is(waitErr, exec.ErrWaitDelay) && r.cmd.ProcessState != nil && r.cmd.ProcessState.Success() {
		// curl exited 0 and its answer was read; only exec's copying of its stdin or stderr had not ended
		// (something curl started still held them). Counting that as a failure threw answers away and
		// resent the call.
		waitErr = nil
	}
	r.writer.Wait()
	r.out.Close()
	r.cancel()

	var exit *exec.ExitError
	switch {
	case r.timeout != "":
		return fmt.Errorf("%w: %s", wire.ErrTimeout, r.timeout)
	case r.killed:
		return fmt.Errorf("%w: %v", wire.ErrUnreachable, readErr)
	case errors.As(waitErr, &exit) && exit.ExitCode() > 0:
		return curlError(r.ep, exit.ExitCode(), time.Since(r.start), r.stderr.String())
	case waitErr != nil:
		// Killed by the context: curl outlived its --max-time by curlGrace.
		if time.Now().After(r.deadline) {
			return fmt.Errorf("%w: call exceeded timeout %s", wire.ErrTimeout, r.ep.Timeout)
		}
		return fmt.Errorf("%w: curl: %v", wire.ErrUnreachable, waitErr)
	case readErr != nil:
		return fmt.Errorf("%w: %v", wire.ErrUnreachable, readErr)
	}
	return nil
}

// curlError maps curl's exit status: 28 is a timeout, which elapsed tells apart (curl's messages do not:
// --max-time firing while connecting also reads "Connection timed out"); every other failure means no
// complete answer came, among them 6 (DNS), 7 (refused), 35 and 60 (TLS), 52 (empty reply), 56 (reset, proxy
// refused the CONNECT) and 18 (body cut short).
func curlError(ep *wire.Target, code int, elapsed time.Duration, stderr string) error {
	msg := strings.TrimSpace(stderr)
	if msg == "" {
		msg = fmt.Sprintf("curl exited with status %d", code)
	}
	if code == 28 {
		if elapsed >= ep.Timeout {
			return fmt.Errorf("%w: call exceeded timeout %s: %s", wire.ErrTimeout, ep.Timeout, msg)
		}
		return fmt.Errorf("%w: connect timeout %s: %s", wire.ErrTimeout, ep.ConnectTimeout, msg)
	}
	return fmt.Errorf("%w: %s", wire.ErrUnreachable, msg)
}

// curlConfig writes the curl config file for one call: everything but -q and the config's own path.
func curlConfig(req *wire.Request, t target, caBundle string, stream bool) ([]byte, error) {
	var b bytes.Buffer
	var bad error
	opt := func(name, value string) {
		if strings.ContainsAny(value, "\r\n\x00") {
			// The config's quoting would turn these into real line breaks inside the request.
			if name == "header" {
				name, _, _ = strings.Cut(value, ":")
			}
			bad = fmt.Errorf("cannot pass a line break to curl: %s holds one", name)
			return
		}
		b.WriteString(name)
		b.WriteString(" = \"")
		for i := 0; i < len(value); i++ {
			if value[i] == '"' || value[i] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(value[i])
		}
		b.WriteString("\"\n")
	}
	flag := func(name string) { b.WriteString(name); b.WriteByte('\n') }
	ep := req.Target

	opt("url", req.URL)
	if req.Method == "HEAD" {
		flag("head")
	} else {
		opt("request", req.Method)
	}
	hasUA, hasAccept := false, false
	for _, h := range req.Header {
		hasUA = hasUA || strings.EqualFold(h[0], "User-Agent")
		hasAccept = hasAccept || strings.EqualFold(h[0], "Accept")
		if h[1] == "" {
			opt("header", h[0]+";") // "Name:" would remove the header; "Name;" sends it empty
		} else {
			opt("header", h[0]+": "+h[1])
		}
	}
	ct := req.ContentType
	if ct == "" {
		ct = "application/json"
	}
	opt("header", "Content-Type: "+ct)
	opt("header", "Accept-Encoding: identity")
	opt("header", "Expect:") // curl would send Expect: 100-continue with bodies over 1 KiB and wait for the 100
	if !hasUA {
		opt("header", "User-Agent:") // Client sends none either
	}
	if !hasAccept {
		opt("header", "Accept:")
	}
	if req.Method != "GET" && req.Method != "HEAD" {
		opt("data-binary", "@-")
	}
	opt("connect-timeout", seconds(ep.ConnectTimeout))
	opt("max-time", seconds(ep.Timeout))
	flag("include")                  // the header blocks come first on stdout, then the body
	flag("suppress-connect-headers") // without the proxy's answer to CONNECT
	flag("no-progress-meter")        // errors still go to stderr
	flag("globoff")                  // [] and {} in a URL are not ranges
	flag("path-as-is")               // as Client: the path goes out as given
	if stream {
		flag("no-buffer")
	}
	if t.proxy != nil {
		opt("proxy", t.proxy.String())
		flag("proxytunnel") // http:// upstreams by CONNECT too, as Client does
		if t.proxy.Scheme == "https" {
			if ep.InsecureTLS {
				flag("proxy-insecure")
			} else if caBundle != "" {
				opt("proxy-cacert", caBundle)
			}
		}
	} else {
		opt("noproxy", "*")
	}
	if ep.InsecureTLS {
		flag("insecure")
	} else if caBundle != "" {
		opt("cacert", caBundle)
	}
	return b.Bytes(), bad
}

func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) }

// prefixBuffer keeps the first 4 KiB written to it: curl's error message, without letting a chatty curl
// grow memory.
type prefixBuffer struct{ b []byte }

func (p *prefixBuffer) Write(b []byte) (int, error) {
	if room := 4<<10 - len(p.b); room > 0 {
		p.b = append(p.b, b[:min(room, len(b))]...)
	}
	return len(b), nil
}

func (p *prefixBuffer) String() string { return string(p.b) }
