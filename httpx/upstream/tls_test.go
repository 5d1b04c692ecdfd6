package upstream

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"llmcache/pipeline/wire"
)

func TestTLS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	srv := ca.tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	// Both names are in the leaf: an IP address is checked against its IP SANs, a name against its DNS SANs.
	urls := []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)}
	eachTransport(t, func(t *testing.T, newT func(Options) transport) {
		tr := newT(Options{})
		for _, u := range urls {
			ep := endpoint(u)
			err := tr.Do(request(ep, "/"), &wire.Response{})
			wantKind(t, err, wire.ErrUnreachable, "certificate")
			err = tr.Stream(request(ep, "/"), &sink{})
			wantKind(t, err, wire.ErrUnreachable, "certificate")

			for _, trusting := range []*wire.Target{
				{Name: u + "#ca", URL: u, CAFile: ca.caFile},
				{Name: u + "#insecure", URL: u, InsecureTLS: true},
			} {
				trusting.ConnectTimeout, trusting.FirstByteTimeout, trusting.Timeout = ep.ConnectTimeout, ep.FirstByteTimeout, ep.Timeout
				if err := tr.Check([]wire.Target{*trusting}); err != nil {
					t.Fatal(err)
				}
				var resp wire.Response
				if err := tr.Do(request(trusting, "/"), &resp); err != nil || string(resp.Body) != "ok" {
					t.Errorf("%s: Do: %v %q", trusting.Name, err, resp.Body)
				}
				s := &sink{}
				if err := tr.Stream(request(trusting, "/"), s); err != nil || s.body() != "ok" {
					t.Errorf("%s: Stream: %v %q", trusting.Name, err, s.body())
				}
			}
		}
	})
}

func TestCheckRejectsBadEndpoints(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	eachTransport(t, func(t *testing.T, newT func(Options) transport) {
		tr := newT(Options{})
		for _, c := range []struct {
			ep   wire.Target
			want string
		}{
			{wire.Target{Name: "a", URL: "https://127.0.0.1:1", CAFile: missing}, `endpoint "a": cannot read ca_file`},
			{wire.Target{Name: "b", URL: "https://127.0.0.1:1", CAFile: garbage}, `endpoint "b": ca_file "` + garbage + `" holds no PEM certificate`},
			{wire.Target{URL: "ftp://127.0.0.1:1"}, `endpoint "ftp://127.0.0.1:1": bad endpoint URL`},
		} {
			err := tr.Check([]wire.Target{{Name: "good", URL: "http://127.0.0.1:1"}, c.ep})
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "good") {
				t.Errorf("Check: %v, want an error saying %q", err, c.want)
			}
		}
		// Without Check, the call says it.
		ep := endpoint("https://127.0.0.1:1")
		ep.CAFile = missing
		err := tr.Do(request(ep, "/"), &wire.Response{})
		wantKind(t, err, wire.ErrUnreachable, "cannot read ca_file")
	})
}
