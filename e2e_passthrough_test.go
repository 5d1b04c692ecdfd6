package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strconv"
	"testing"

	"llmcache/bench/fakeupstream"
)

// lastRequest returns the only request the fake upstream received since its last reset.
func lastRequest(t *testing.T, p *testProxy) fakeupstream.Recorded {
	t.Helper()
	reqs := p.Fake.Requests()
	if len(reqs) != 1 {
		t.Fatalf("the fake upstream recorded %d requests, want 1", len(reqs))
	}
	return reqs[0]
}

// forwarded sends body once (a miss) and returns what reached the upstream.
func forwarded(t *testing.T, p *testProxy, body string, header ...string) fakeupstream.Recorded {
	t.Helper()
	p.Fake.ResetCounters()
	r, b := p.Post("/v1/chat/completions", body, header...)
	if r.StatusCode != 200 {
		t.Fatalf("status %d: %s", r.StatusCode, b)
	}
	return lastRequest(t, p)
}

// TestE2EBodyPassesThrough: a body with nothing to change reaches the upstream byte for byte: key order,
// whitespace, number spellings, escapes, big integers and fields the proxy does not know.
func TestE2EBodyPassesThrough(t *testing.T) {
	p := newTestProxy(t, nil)
	bodies := []string{
		`{"model":"fake-model","messages":[{"role":"user","content":"plain"}]}`,
		"{\"temperature\":1.0, \"messages\":[{\"content\":\"caf\\u00e9 \\ud83d\\ude00\",\"role\":\"user\"}],\n\"model\":\"fake-model\",\"max_tokens\":1e2,\"top_p\":10E-1,\"seed\":12345678901234567890123,\"logit_bias\":{\"50256\":-100},\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\",\"properties\":{}}}}],\"vendor_ext\":{\"x\":[1,2.50,null,true]},\"stream\":false,\"user\":\"u\",\"stream_options\":{\"include_usage\":true}}",
		`{"model":"fake-model","messages":[{"role":"user","content":[{"type":"text","text":"parts"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]}],"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"object"}}},"n":2,"logprobs":true,"top_logprobs":3}`,
	}
	for i, body := range bodies {
		got := forwarded(t, p, body)
		if !bytes.Equal(got.Body, []byte(body)) {
			t.Errorf("body %d changed on the way upstream:\n sent      %s\n forwarded %s", i, body, got.Body)
		}
		if got.Method != "POST" || got.Path != "/v1/chat/completions" {
			t.Errorf("body %d went to %s %s, want POST /v1/chat/completions", i, got.Method, got.Path)
		}
	}
}

// TestE2ECacheObjectRemoved: LiteLLM's "cache" object is cut out wherever it stands; every other byte stays.
func TestE2ECacheObjectRemoved(t *testing.T) {
	p := newTestProxy(t, nil)
	cases := []struct{ name, sent, want string }{
		{"middle",
			`{"model":"fake-model", "cache": {"namespace":"x","ttl":60}, "messages":[{"role":"user","content":"mid"}], "temperature":1.0}`,
			`{"model":"fake-model", "messages":[{"role":"user","content":"mid"}], "temperature":1.0}`},
		{"first",
			`{"cache":{"no-store":true},"model":"fake-model","messages":[{"role":"user","content":"first"}]}`,
			`{"model":"fake-model","messages":[{"role":"user","content":"first"}]}`},
		{"last",
			`{"model":"fake-model","messages":[{"role":"user","content":"last"}],"cache":{"sample":1}}`,
			`{"model":"fake-model","messages":[{"role":"user","content":"last"}]}`},
		{"nested cache field kept",
			`{"model":"fake-model","metadata":{"cache":{"keep":1}},"cache":{},"messages":[{"role":"user","content":"nested"}]}`,
			`{"model":"fake-model","metadata":{"cache":{"keep":1}},"messages":[{"role":"user","content":"nested"}]}`},
	}
	for _, c := range cases {
		got := forwarded(t, p, c.sent)
		if string(got.Body) != c.want {
			t.Errorf("%s:\n sent      %s\n forwarded %s\n want      %s", c.name, c.sent, got.Body, c.want)
		}
	}
}

// TestE2EModelOverride: an endpoint's model replaces the model value only; the client still gets the
// upstream's answer, and the key is the model asked.
func TestE2EModelOverride(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.APIEndpoints[0].Model = "served/model-7b" })
	sent := `{"messages":[{"role":"user","content":"override"}], "model" : "asked-model", "temperature":0.50}`
	got := forwarded(t, p, sent)
	want := `{"messages":[{"role":"user","content":"override"}], "model" : "served/model-7b", "temperature":0.50}`
	if string(got.Body) != want {
		t.Errorf("model override:\n forwarded %s\n want      %s", got.Body, want)
	}
	if cl := got.Header["Content-Length"]; cl != strconv.Itoa(len(want)) {
		t.Errorf("upstream Content-Length %q, want %d (the length of the forwarded body)", cl, len(want))
	}
	r, b := p.Post("/v1/chat/completions", `{"model":"asked-model","messages":[{"role":"user","content":"override"}],"temperature":0.5}`)
	expectCache(t, "same request, other spelling", r, b, 200, "HIT")
	var a struct{ Model string }
	if err := json.Unmarshal(b, &a); err != nil || a.Model != "served/model-7b" {
		t.Errorf("answer model %q (%v), want the upstream's served/model-7b passed through", a.Model, err)
	}
}

// decodeMembers decodes a JSON object into its raw members.
func decodeMembers(t *testing.T, b []byte) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, b)
	}
	return m
}

// TestE2EEnableThinkingForwarded: enable_thinking = true (thinking_field "both") sets it at the top level and
// in chat_template_kwargs, replacing the client's values and keeping every other member's bytes.
func TestE2EEnableThinkingForwarded(t *testing.T) {
	on := true
	p := newTestProxy(t, func(c *fileConfig) { c.EnableThinking = &on })
	cases := []struct{ name, sent string }{
		{"added", `{"model":"fake-model","messages":[{"role":"user","content":"think 1"}],"temperature":1.0}`},
		{"client says false", `{"model":"fake-model","enable_thinking":false,"chat_template_kwargs":{"foo":1.50,"enable_thinking":false},"messages":[{"role":"user","content":"think 2"}]}`},
		{"kwargs without it", `{"model":"fake-model","chat_template_kwargs":{"foo":"bar"},"messages":[{"role":"user","content":"think 3"}]}`},
	}
	for _, c := range cases {
		got := forwarded(t, p, c.sent)
		sent, fwd := decodeMembers(t, []byte(c.sent)), decodeMembers(t, got.Body)
		if string(fwd["enable_thinking"]) != "true" {
			t.Errorf("%s: top-level enable_thinking = %s, want true; forwarded %s", c.name, fwd["enable_thinking"], got.Body)
		}
		kw := decodeMembers(t, fwd["chat_template_kwargs"])
		if string(kw["enable_thinking"]) != "true" {
			t.Errorf("%s: chat_template_kwargs.enable_thinking = %s, want true; forwarded %s", c.name, kw["enable_thinking"], got.Body)
		}
		if skw, ok := sent["chat_template_kwargs"]; ok {
			for k, v := range decodeMembers(t, skw) {
				if k != "enable_thinking" && !bytes.Equal(kw[k], v) {
					t.Errorf("%s: chat_template_kwargs.%s = %s, client sent %s", c.name, k, kw[k], v)
				}
			}
		}
		for k, v := range sent {
			if k == "enable_thinking" || k == "chat_template_kwargs" {
				continue
			}
			if !bytes.Equal(fwd[k], v) {
				t.Errorf("%s: member %q forwarded as %s, client sent %s", c.name, k, fwd[k], v)
			}
		}
		if len(fwd) != len(sent)+2-countOf(sent, "enable_thinking", "chat_template_kwargs") {
			t.Errorf("%s: forwarded members %d, sent %d: %s", c.name, len(fwd), len(sent), got.Body)
		}
	}
}

// TestE2EThinkingFieldPlacement: thinking_field puts the forced value at the top level only, in
// chat_template_kwargs only, or both; with enable_thinking absent the client's own value passes through.
func TestE2EThinkingFieldPlacement(t *testing.T) {
	off := false
	sent := `{"model":"fake-model","enable_thinking":true,"chat_template_kwargs":{"enable_thinking":true,"x":1},"messages":[{"role":"user","content":"place it"}]}`
	for _, c := range []struct {
		field          string
		force          *bool
		top, templated string
	}{
		{"top_level", &off, "false", "true"},
		{"chat_template_kwargs", &off, "true", "false"},
		{"both", &off, "false", "false"},
		{"both", nil, "true", "true"}, // absent: the client's values untouched
	} {
		p := newTestProxy(t, func(cfg *fileConfig) { cfg.ThinkingField, cfg.EnableThinking = c.field, c.force })
		fwd := decodeMembers(t, forwarded(t, p, sent).Body)
		kw := decodeMembers(t, fwd["chat_template_kwargs"])
		if string(fwd["enable_thinking"]) != c.top || string(kw["enable_thinking"]) != c.templated || string(kw["x"]) != "1" {
			t.Errorf("thinking_field %s, enable_thinking %v: forwarded top %s, kwargs %s; want %s and %s",
				c.field, c.force != nil, fwd["enable_thinking"], fwd["chat_template_kwargs"], c.top, c.templated)
		}
		p.Stop()
	}
}

func countOf(m map[string]json.RawMessage, keys ...string) int {
	n := 0
	for _, k := range keys {
		if _, ok := m[k]; ok {
			n++
		}
	}
	return n
}

// TestE2EEnableThinkingInKey: the effective enable_thinking is part of the key. Proxies configured with it
// absent, false and true, one after another on the same database file, each make their own entry.
func TestE2EEnableThinkingInKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "thinking.db")
	body := chatBody("to think or not")
	off, on := false, true
	keys := map[string]string{}
	var total int
	for _, setting := range []struct {
		name string
		v    *bool
	}{{"absent", nil}, {"false", &off}, {"true", &on}} {
		p := newTestProxy(t, func(c *fileConfig) { c.DatabaseURL = path; c.EnableThinking = setting.v })
		r, b := p.Post("/v1/chat/completions", body)
		expectCache(t, "enable_thinking "+setting.name, r, b, 200, "MISS")
		k := cacheKey(t, r)
		if other, dup := keys[k]; dup {
			t.Errorf("enable_thinking %s and %s share key %s", setting.name, other, k)
		}
		keys[k] = setting.name
		r, b = p.Post("/v1/chat/completions", body)
		expectCache(t, "enable_thinking "+setting.name+" again", r, b, 200, "HIT")
		expectCalls(t, p, 1)
		p.Stop()
		total++
		if n := openCacheDB(t, path).count(); n != total {
			t.Fatalf("after enable_thinking %s: %d rows, want %d", setting.name, n, total)
		}
	}
}

// TestE2EHeadersForwarded: the client's Authorization goes upstream when the endpoint has no key; api_headers
// and the endpoint's headers are added; connection, length, encoding and cache-control headers are not
// forwarded, and the upstream is asked for identity encoding.
func TestE2EHeadersForwarded(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) {
		c.APIHeaders = map[string]string{"User-Agent": "llmcache-test/1.0", "X-Org": "acme"}
		c.APIEndpoints[0].Headers = map[string]string{"X-Endpoint": "e1"}
	})
	body := chatBody("headers")
	got := forwarded(t, p, body,
		"Authorization", "Bearer client-token",
		"X-Custom", "custom value",
		"OpenAI-Organization", "org-1",
		"Accept-Encoding", "gzip, br",
		"Connection", "keep-alive",
		"Keep-Alive", "timeout=5",
		"Cache-Control", "max-age=3600",
		"X-Cache-Namespace", "hdr-ns",
		"X-Cache-TTL", "60",
		"User-Agent", "client-agent",
	)
	h := got.Header
	want := map[string]string{
		"Authorization":       "Bearer client-token",
		"X-Custom":            "custom value",
		"Openai-Organization": "org-1",
		"X-Org":               "acme",
		"X-Endpoint":          "e1",
		"User-Agent":          "llmcache-test/1.0",
		"Accept-Encoding":     "identity",
		"Content-Type":        "application/json",
		"Content-Length":      strconv.Itoa(len(body)),
		"Host":                p.Fake.Addr(),
	}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("upstream header %s = %q, want %q", k, h[k], v)
		}
	}
	for _, k := range []string{"Keep-Alive", "Cache-Control", "X-Cache-Namespace", "X-Cache-Ttl"} {
		if v, ok := h[k]; ok {
			t.Errorf("upstream got %s: %q; it must not be forwarded", k, v)
		}
	}
	if v, ok := h["Connection"]; ok && v != "close" {
		t.Errorf("upstream got the client's Connection: %q", v)
	}

	// With an api_key the endpoint's key replaces the client's Authorization.
	k := newTestProxy(t, func(c *fileConfig) { c.APIEndpoints[0].APIKey = "sk-endpoint" })
	got = forwarded(t, k, body, "Authorization", "Bearer client-token")
	if a := got.Header["Authorization"]; a != "Bearer sk-endpoint" {
		t.Errorf("with api_key: upstream Authorization = %q, want %q", a, "Bearer sk-endpoint")
	}
	got = forwarded(t, k, chatBody("no client auth"))
	if a := got.Header["Authorization"]; a != "Bearer sk-endpoint" {
		t.Errorf("with api_key, no client Authorization: upstream Authorization = %q, want %q", a, "Bearer sk-endpoint")
	}
	// The default api_headers set the User-Agent.
	if ua := got.Header["User-Agent"]; ua != "llmcache/1.0" {
		t.Errorf("default api_headers: upstream User-Agent = %q, want llmcache/1.0", ua)
	}
}
