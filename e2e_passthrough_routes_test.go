package main

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"llmcache/bench/fakeupstream"
)

// Routes the proxy does not know are passed through to the endpoint uncached (X-Cache: BYPASS), the request
// as the client sent it and the answer as the upstream wrote it.

// expectBypass checks a pass-through answer's status and headers: BYPASS, no key (nothing is cached).
func expectBypass(t *testing.T, what string, resp *http.Response, body []byte, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s: status %d, want %d: %s", what, resp.StatusCode, status, body)
	}
	if got := resp.Header.Get("X-Cache"); got != "BYPASS" {
		t.Fatalf("%s: X-Cache %q, want BYPASS", what, got)
	}
	if k := resp.Header.Get("X-Cache-Key"); k != "" {
		t.Fatalf("%s: X-Cache-Key %q on an answer that is never cached", what, k)
	}
}

// directly sends the request to the fake upstream itself, for the bytes it answers without the proxy.
func directly(t *testing.T, p *testProxy, method, path, contentType, body string) []byte {
	t.Helper()
	req, _ := http.NewRequest(method, p.Fake.URL()+path, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return b.Bytes()
}

var moderationID = regexp.MustCompile(`modr-fake-[0-9]+`)

// TestE2EPassThroughModerations: a JSON route the proxy does not know, asked twice, is two upstream calls;
// the client gets the upstream's bytes (indented when the upstream indents) and the upstream the client's.
func TestE2EPassThroughModerations(t *testing.T) {
	p := newTestProxy(t, nil)
	const req = "{\"model\": \"omni-moderation-latest\",\n \"input\": [\"fine\", \"FLAG me\"]}"
	want := moderationID.ReplaceAll(directly(t, p, "POST", "/v1/moderations", "application/json", req), []byte("modr-fake-N"))
	p.Fake.ResetCounters()
	var ids []string
	for i := range 2 {
		resp, body := p.Post("/v1/moderations", req)
		expectBypass(t, "moderations", resp, body, 200)
		if got := moderationID.ReplaceAll(body, []byte("modr-fake-N")); !bytes.Equal(got, want) {
			t.Fatalf("answer %d differs from the upstream's:\n%s\nwant\n%s", i, body, want)
		}
		ids = append(ids, moderationID.FindString(string(body)))
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("Content-Type %q", ct)
		}
	}
	if ids[0] == ids[1] {
		t.Fatal("the second answer has the first's id: it was cached")
	}
	if os.Getenv("LLMCACHE_TEST_UPSTREAM") == "indented" && !bytes.Contains(want, []byte("\n  \"id\"")) {
		t.Fatalf("the indented pass got a compact answer: %s", want)
	}
	reqs := p.Fake.Requests()
	if n := p.Fake.CallsTo(fakeupstream.RouteModerations); n != 2 || len(reqs) != 2 {
		t.Fatalf("%d upstream moderations calls, want 2", n)
	}
	for _, r := range reqs {
		if r.Method != "POST" || r.Path != "/v1/moderations" || string(r.Body) != req || r.Header["Content-Type"] != "application/json" {
			t.Fatalf("the upstream got %s %s %q: %s", r.Method, r.Path, r.Header["Content-Type"], r.Body)
		}
	}
	var by struct {
		HitRate  float64 `json:"hit_rate"`
		Requests struct {
			ByRoute map[string]map[string]int64 `json:"by_route"`
		} `json:"requests"`
	}
	_, sb := p.Get("/stats")
	if err := json.Unmarshal(sb, &by); err != nil || by.Requests.ByRoute["passthrough"]["bypass"] != 2 || by.HitRate != 0 {
		t.Fatalf("/stats: by_route.passthrough %v, hit_rate %v (%v)", by.Requests.ByRoute["passthrough"], by.HitRate, err)
	}
}

// TestE2EPassThroughAudio: a multipart upload reaches the upstream byte for byte with its boundary, and a
// binary answer comes back byte for byte.
func TestE2EPassThroughAudio(t *testing.T) {
	p := newTestProxy(t, nil)
	audio := make([]byte, 300_000)
	for i := range audio {
		audio[i] = byte(i*31 + i>>8)
	}
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, _ := mw.CreateFormFile("file", "speech.wav")
	fw.Write(audio)
	mw.WriteField("model", "whisper-1")
	mw.WriteField("response_format", "text")
	mw.Close()
	resp, body := p.request("POST", "/v1/audio/transcriptions", "", form.String(), "Content-Type", mw.FormDataContentType())
	expectBypass(t, "transcription", resp, body, 200)
	if string(body) != fakeupstream.Transcript("speech.wav", audio)+"\n" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("transcription %q (%s), want %q", body, resp.Header.Get("Content-Type"), fakeupstream.Transcript("speech.wav", audio))
	}
	got := lastRequest(t, p)
	if !bytes.Equal(got.Body, form.Bytes()) || got.Header["Content-Type"] != mw.FormDataContentType() {
		t.Fatalf("the upstream got %d bytes as %q, want the %d sent as %q", len(got.Body), got.Header["Content-Type"], form.Len(), mw.FormDataContentType())
	}

	input := strings.Repeat("read this aloud. ", 2000)
	resp, body = p.Post("/v1/audio/speech", `{"model":"tts-1","voice":"alloy","input":`+jsonString(input)+`}`)
	expectBypass(t, "speech", resp, body, 200)
	if want := fakeupstream.SpeechAudio(input); !bytes.Equal(body, want) || resp.Header.Get("Content-Type") != "audio/mpeg" {
		t.Fatalf("speech: %d bytes as %q, want the upstream's %d", len(body), resp.Header.Get("Content-Type"), len(want))
	}
	if n := p.Fake.CallsTo(fakeupstream.RouteAudio); n != 2 {
		t.Fatalf("%d upstream audio calls, want 2", n)
	}
}

// TestE2EPassThroughHeaders: the header rules of the cached routes: hop-by-hop headers and the cache
// controls stay back (a control that would be a 400 elsewhere is no error here), the endpoint's key and
// api_headers replace the client's; with client keys a request needs one and it never reaches the upstream.
func TestE2EPassThroughHeaders(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) {
		c.APIHeaders = map[string]string{"X-Team": "from-config"}
	})
	resp, body := p.request("POST", "/v1/moderations", "", `{"input":"hi"}`, "Content-Type", "application/json",
		"Authorization", "Bearer sk-client", "X-Custom", "kept", "X-Team", "from-client", "X-Cache-TTL", "not a number",
		"Cache-Control", "no-store", "Connection", "X-Hop", "X-Hop", "dropped")
	expectBypass(t, "headers", resp, body, 200)
	h := lastRequest(t, p).Header
	for name, want := range map[string]string{"Authorization": "Bearer sk-client", "X-Custom": "kept", "X-Team": "from-config", "Accept-Encoding": "identity"} {
		if h[name] != want {
			t.Errorf("%s = %q upstream, want %q", name, h[name], want)
		}
	}
	for _, name := range []string{"X-Cache-Ttl", "Cache-Control", "X-Hop"} {
		if v, ok := h[name]; ok {
			t.Errorf("%s = %q reached the upstream", name, v)
		}
	}

	k := clientKeysProxy(t)
	resp, body = k.Post("/v1/moderations", `{"input":"hi"}`)
	if e := expectError(t, "no client key", resp, body, 401); str(e.Error.Code) != "invalid_api_key" {
		t.Fatalf("code %s", e.Error.Code)
	}
	if n := k.Fake.Calls(); n != 0 {
		t.Fatalf("%d upstream calls without a client key", n)
	}
	resp, body = k.Post("/v1/moderations", `{"input":"hi"}`, bearerOf("team-a-key")...)
	expectBypass(t, "with a client key", resp, body, 200)
	if got := lastRequest(t, k).Header["Authorization"]; got != "Bearer sk-upstream-own" {
		t.Fatalf("Authorization %q upstream, want the endpoint's own key", got)
	}
}

// TestE2EPassThroughRoutes: what is passed through and what is not: any method and path under /v1/ with its
// query string (after the endpoint's own), an upstream error status as it came; paths outside /v1/ stay a
// 404 and a known path with another method a 405, without an upstream call.
func TestE2EPassThroughRoutes(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.APIEndpoints[0].URL += "/v1?api-version=2024-10-21" })
	// /v1/files and /v1/batches are the proxy's own (the Batch API); /v1/vector_stores is not.
	resp, body := p.request("GET", "/v1/vector_stores?order=asc&limit=2", "", "")
	expectBypass(t, "an upstream 404", resp, body, 404)
	if e := expectError(t, "an upstream 404", resp, body, 404); !strings.Contains(e.Error.Message, "/v1/vector_stores") {
		t.Fatalf("not the upstream's error: %s", body)
	}
	got := lastRequest(t, p)
	if got.Method != "GET" || got.Path != "/v1/vector_stores" || got.Query != "api-version=2024-10-21&order=asc&limit=2" {
		t.Fatalf("the upstream got %s %s ? %s", got.Method, got.Path, got.Query)
	}
	p.Fake.ResetCounters()
	resp, body = p.request("DELETE", "/v1/vector_stores/vs-abc", "", "")
	expectBypass(t, "delete", resp, body, 404)
	if got := lastRequest(t, p); got.Method != "DELETE" || got.Path != "/v1/vector_stores/vs-abc" {
		t.Fatalf("the upstream got %s %s", got.Method, got.Path)
	}
	p.Fake.ResetCounters()

	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"POST", "/moderations", 404},
		{"POST", "/v1/", 404},
		{"GET", "/v1/chat/completions", 405},
		{"PUT", "/v1/embeddings", 405},
		{"POST", "/v1/../moderations", 404},
	} {
		resp, body := p.request(c.method, c.path, "", `{"input":"x"}`, "Content-Type", "application/json")
		expectError(t, c.method+" "+c.path, resp, body, c.status)
		if x := resp.Header.Get("X-Cache"); x != "" {
			t.Errorf("%s %s: X-Cache %q", c.method, c.path, x)
		}
	}
	if n := p.Fake.Calls(); n != 0 {
		t.Fatalf("%d upstream calls for paths not passed through", n)
	}

	// read_only never calls an upstream, on any route.
	resp, body = p.Post("/v1/moderations", `{"input":"x"}`, "X-Cache-Mode", "read_only")
	expectBypass(t, "read_only", resp, body, 404)
	if e := expectError(t, "read_only", resp, body, 404); str(e.Error.Code) != "cache_miss" {
		t.Fatalf("code %s", e.Error.Code)
	}
	if n := p.Fake.Calls(); n != 0 {
		t.Fatalf("%d upstream calls in read_only mode", n)
	}
	// HEAD goes as HEAD: the fake knows only POST there.
	resp, body = p.request("HEAD", "/v1/moderations", "", "")
	expectBypass(t, "HEAD", resp, body, 405)
	if got := lastRequest(t, p); got.Method != "HEAD" {
		t.Fatalf("the upstream got %s", got.Method)
	}
}

// TestE2EPassThroughRetriesAndFailures: an upstream failure is retried as on the cached routes; the last
// failure reaches the client as the upstream sent it, and no answer at all is a 502 in OpenAI's shape.
func TestE2EPassThroughRetriesAndFailures(t *testing.T) {
	p := newTestProxy(t, nil)
	p.Fake.FailNext(1, 503, "", nil)
	resp, body := p.Post("/v1/moderations", `{"input":"retried"}`)
	expectBypass(t, "retried", resp, body, 200)
	if n := p.Fake.CallsTo(fakeupstream.RouteModerations); n != 2 {
		t.Fatalf("%d upstream calls, want 2 (one failed, one retried)", n)
	}

	q := newTestProxy(t, noRetries)
	q.Fake.FailNext(1, 429, `{"error":{"message":"slow down","type":"rate_limit","param":null,"code":null}}`, map[string]string{"Retry-After": "3"})
	resp, body = q.Post("/v1/moderations", `{"input":"throttled"}`)
	expectBypass(t, "throttled", resp, body, 429)
	if string(body) != `{"error":{"message":"slow down","type":"rate_limit","param":null,"code":null}}` || resp.Header.Get("Retry-After") != "3" {
		t.Fatalf("429 relayed as %s, Retry-After %q", body, resp.Header.Get("Retry-After"))
	}
	q.Fake.Close()
	resp, body = q.Post("/v1/moderations", `{"input":"nobody home"}`)
	expectBypass(t, "unreachable", resp, body, 502)
	if e := expectError(t, "unreachable", resp, body, 502); str(e.Error.Code) != "upstream_unreachable" {
		t.Fatalf("code %s", e.Error.Code)
	}
}
