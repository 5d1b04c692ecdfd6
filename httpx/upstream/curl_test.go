package upstream

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"llmcache/pipeline/wire"
)

func newTestCurl(t *testing.T, opts Options) *Curl {
	c, err := NewCurl(opts)
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestNewCurlWithoutCurl(t *testing.T) {
	t.Parallel()
	_, err := newCurl(Options{}, "llmcache-no-such-curl")
	if err == nil || !strings.Contains(err.Error(), "use_curl = true but no curl binary found in PATH: ") {
		t.Fatalf("err = %v", err)
	}
}

func TestCurlConfigHoldsWhatTheCommandLineMustNot(t *testing.T) {
	t.Parallel()
	ep := endpoint("https://api.example.com/v1")
	ep.ConnectTimeout, ep.Timeout = 1500*time.Millisecond, 600*time.Second
	req := request(ep, "/chat/completions")
	req.Header = [][2]string{{"Authorization", "Bearer sk-secret-1"}, {"X-Api-Key", "key-secret-2"}, {"X-Quoted", `say "hi" \o/`}}
	proxy, _ := url.Parse("http://u:pw-secret-3@proxy.corp:3128")
	cfg, err := curlConfig(req, target{url: mustURL(t, req.URL), addr: "api.example.com:443", isTLS: true, proxy: proxy}, "/tmp/bundle.pem", true)
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Join(curlArgs, " ")
	for _, secret := range []string{"sk-secret-1", "key-secret-2", "pw-secret-3", "api.example.com"} {
		if strings.Contains(args, secret) {
			t.Errorf("curl's command line %q holds %q", args, secret)
		}
		if !bytes.Contains(cfg, []byte(secret)) {
			t.Errorf("config lacks %q:\n%s", secret, cfg)
		}
	}
	for _, line := range []string{
		`url = "https://api.example.com/v1/chat/completions"`,
		`request = "POST"`,
		`header = "Authorization: Bearer sk-secret-1"`,
		`header = "X-Quoted: say \"hi\" \\o/"`,
		`header = "Expect:"`,
		`header = "Accept-Encoding: identity"`,
		`data-binary = "@-"`,
		`connect-timeout = "1.500"`,
		`max-time = "600.000"`,
		`proxy = "http://u:pw-secret-3@proxy.corp:3128"`,
		"proxytunnel",
		`cacert = "/tmp/bundle.pem"`,
		"no-buffer",
		"include",
		"suppress-connect-headers",
	} {
		if !bytes.Contains(cfg, []byte(line+"\n")) {
			t.Errorf("config lacks %s:\n%s", line, cfg)
		}
	}
	for _, unwanted := range []string{"compressed", "http1.1", "noproxy", "insecure", "raw"} {
		if bytes.Contains(cfg, []byte("\n"+unwanted)) {
			t.Errorf("config holds %s:\n%s", unwanted, cfg)
		}
	}

	// Direct, insecure, not streaming.
	ep.InsecureTLS = true
	cfg, err = curlConfig(req, target{url: mustURL(t, req.URL)}, "", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{`noproxy = "*"`, "insecure"} {
		if !bytes.Contains(cfg, []byte(line+"\n")) {
			t.Errorf("config lacks %s:\n%s", line, cfg)
		}
	}
	if bytes.Contains(cfg, []byte("no-buffer")) || bytes.Contains(cfg, []byte("proxytunnel")) {
		t.Errorf("config:\n%s", cfg)
	}

	// A line break would end the config line and inject whatever follows.
	req.Header = [][2]string{{"X-Evil", "a\r\nX-Injected: 1"}}
	if _, err := curlConfig(req, target{url: mustURL(t, req.URL)}, "", false); err == nil || !strings.Contains(err.Error(), "X-Evil") {
		t.Errorf("err = %v, want one naming X-Evil", err)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// While curl runs, no process's command line shows the secret: what ps would show any local user.
func TestCurlCommandLineShowsNoSecret(t *testing.T) {
	t.Parallel()
	if _, err := os.ReadFile("/proc/self/cmdline"); err != nil {
		t.Skip("no /proc here:", err)
	}
	const secret = "sk-proc-check-7f3a"
	type scan struct{ curls, leaks int }
	scans := make(chan scan, 1)
	srv := blockingServer(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		var s scan
		paths, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				continue // gone meanwhile
			}
			if bytes.Contains(b, []byte("/dev/fd/3")) && bytes.Contains(b, []byte("curl")) {
				s.curls++
			}
			if bytes.Contains(b, []byte(secret)) {
				s.leaks++
			}
		}
		scans <- s
		io.WriteString(w, r.Header.Get("Authorization"))
	})
	c := newTestCurl(t, Options{})
	req := request(endpoint(srv.URL), "/")
	req.Header = [][2]string{{"Authorization", "Bearer " + secret}}
	var resp wire.Response
	if err := c.Do(req, &resp); err != nil || string(resp.Body) != "Bearer "+secret {
		t.Fatalf("Do: %v %q", err, resp.Body)
	}
	s := <-scans
	if s.curls == 0 {
		t.Fatal("found no running curl: the scan proves nothing")
	}
	if s.leaks != 0 {
		t.Errorf("%d command lines hold the secret", s.leaks)
	}
}

func TestCurlBundleAddsTheCAFileToTheSystemRoots(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	c := newTestCurl(t, Options{})
	path, err := c.bundle(ca.caFile)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	caPEM, _ := os.ReadFile(ca.caFile)
	if !bytes.HasSuffix(got, caPEM) {
		t.Error("the bundle does not end with the ca_file")
	}
	if sys := c.systemRoots(); len(sys) > 0 && !bytes.HasPrefix(got, sys) {
		t.Error("the bundle does not start with the system roots")
	}
	if again, _ := c.bundle(ca.caFile); again != path {
		t.Errorf("second bundle %q, want the first, %q", again, path)
	}
	os.Remove(path) // as a tmp cleaner would
	if again, err := c.bundle(ca.caFile); err != nil {
		t.Fatal(err)
	} else if _, err := os.Stat(again); err != nil {
		t.Errorf("bundle not rewritten: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("Close left %s: %v", path, err)
	}
}

func TestCurlExitStatuses(t *testing.T) {
	t.Parallel()
	ep := &wire.Target{ConnectTimeout: 10 * time.Second, Timeout: 600 * time.Second}
	for _, c := range []struct {
		code    int
		elapsed time.Duration
		kind    error
		says    string
	}{
		{28, 10 * time.Second, wire.ErrTimeout, "connect timeout 10s"},
		{28, 600 * time.Second, wire.ErrTimeout, "call exceeded timeout 10m0s"},
		{6, 0, wire.ErrUnreachable, "curl says"},
		{7, 0, wire.ErrUnreachable, "curl says"},
		{18, 0, wire.ErrUnreachable, "curl says"},
		{35, 0, wire.ErrUnreachable, "curl says"},
		{52, 0, wire.ErrUnreachable, "curl says"},
		{56, 0, wire.ErrUnreachable, "curl says"},
		{60, 0, wire.ErrUnreachable, "curl says"},
	} {
		wantKind(t, curlError(ep, c.code, c.elapsed, "curl says\n"), c.kind, c.says)
	}
	wantKind(t, curlError(ep, 3, 0, ""), wire.ErrUnreachable, "curl exited with status 3")
}
