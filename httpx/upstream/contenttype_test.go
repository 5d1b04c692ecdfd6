package upstream

import (
	"bytes"
	"io"
	"net/http"
	"sync"
	"testing"

	"llmcache/pipeline/wire"
)

// A request's ContentType goes out as the Content-Type (application/json when it has none), with a binary
// body byte for byte, and a binary answer comes back byte for byte: what a route passed through (an audio
// upload, speech audio) needs of either transport.
func TestSendsTheContentTypeAndBinaryBodies(t *testing.T) {
	t.Parallel()
	type seen struct {
		method, contentType string
		body                []byte
	}
	var mu sync.Mutex
	got := map[string]seen{}
	answer := make([]byte, 70000)
	for i := range answer {
		answer[i] = byte(i * 7)
	}
	srv := blockingServer(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got[r.URL.Query().Get("t")] = seen{r.Method, r.Header.Get("Content-Type"), body}
		mu.Unlock()
		w.Header().Set("Content-Type", "audio/mpeg")
		w.Write(answer)
	})
	upload := append([]byte("--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n"), 0, 1, 0xff, '\r', '\n', 0x80)
	upload = append(upload, "\r\n--XyZ--\r\n"...)
	eachTransport(t, func(t *testing.T, newT func(Options) transport) {
		tr := newT(Options{})
		ep := endpoint(srv.URL)
		for _, c := range []struct {
			name, method, contentType, want string
			body                            []byte
		}{
			{"multipart", "POST", `multipart/form-data; boundary="XyZ"`, `multipart/form-data; boundary="XyZ"`, upload},
			{"default", "POST", "", "application/json", []byte(`{"a":1}`)},
			{"delete", "DELETE", "", "application/json", nil},
		} {
			key := t.Name() + c.name
			req := &wire.Request{Target: ep, Method: c.method, URL: srv.URL + "/v1/x?t=" + key, Body: c.body, ContentType: c.contentType}
			var resp wire.Response
			if err := tr.Do(req, &resp); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			mu.Lock()
			s := got[key]
			mu.Unlock()
			if s.method != c.method || s.contentType != c.want || !bytes.Equal(s.body, c.body) {
				t.Errorf("%s: the server got %s %q with %d bytes, want %s %q with %d", c.name, s.method, s.contentType, len(s.body), c.method, c.want, len(c.body))
			}
			if resp.Status != 200 || resp.ContentType != "audio/mpeg" || !bytes.Equal(resp.Body, answer) {
				t.Errorf("%s: answer %d %q with %d bytes, want the %d bytes sent", c.name, resp.Status, resp.ContentType, len(resp.Body), len(answer))
			}
		}
	})
}
