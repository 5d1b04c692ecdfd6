package main

import (
	"encoding/json"
	"net"
	"testing"

	"llmcache/bench/fakeupstream"
)

// modelIDs decodes a models list and returns its ids in order.
func modelIDs(t *testing.T, body []byte) []string {
	t.Helper()
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID     string `json:"id"`
			Object string `json:"object"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("models list is not JSON: %v: %s", err, body)
	}
	if list.Object != "list" {
		t.Fatalf("object %q, want list", list.Object)
	}
	ids := make([]string, len(list.Data))
	for i, m := range list.Data {
		if m.Object != "model" {
			t.Errorf("data[%d].object %q, want model", i, m.Object)
		}
		ids[i] = m.ID
	}
	return ids
}

func TestE2EModelsUnionAndTTL(t *testing.T) {
	second := startFake(t, fakeupstream.Options{Models: []string{"fake-model", "other-model"}})
	p := newTestProxy(t, func(c *fileConfig) {
		c.APIEndpoints = append(c.APIEndpoints, endpointConfig{Name: "second", URL: second.URL() + "/v1", Weight: 1, Model: "override-model"})
	})
	for _, path := range []string{"/v1/models", "/models"} {
		resp, body := p.Get(path)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: status %d: %s", path, resp.StatusCode, body)
		}
		got := modelIDs(t, body)
		want := []string{"fake-model", "other-model", "override-model"}
		if len(got) != len(want) {
			t.Fatalf("GET %s: ids %v, want %v", path, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("GET %s: ids %v, want %v", path, got, want)
			}
		}
	}
	// The second GET came within models_ttl_seconds: one upstream listing per endpoint in all.
	if n := p.Fake.CallsTo("models") + second.CallsTo("models"); n != 2 {
		t.Errorf("upstream models calls = %d, want 2 (one per endpoint; the repeat is served from the list kept)", n)
	}
	if resp, _ := p.Get("/v1/models"); resp.Header.Get("X-Cache") != "HIT" {
		t.Errorf("repeat X-Cache %q, want HIT", resp.Header.Get("X-Cache"))
	}
}

func TestE2EModelsStaleWhenUpstreamsDown(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.ModelsTTLSeconds = 0 })
	resp, first := p.Get("/v1/models")
	if resp.StatusCode != 200 || resp.Header.Get("X-Cache") != "MISS" {
		t.Fatalf("first listing: status %d, X-Cache %q", resp.StatusCode, resp.Header.Get("X-Cache"))
	}
	p.Fake.Close()
	resp, body := p.Get("/v1/models")
	if resp.StatusCode != 200 || resp.Header.Get("X-Cache") != "STALE" {
		t.Fatalf("with every upstream down: status %d, X-Cache %q, want 200 STALE", resp.StatusCode, resp.Header.Get("X-Cache"))
	}
	if string(body) != string(first) {
		t.Errorf("stale list differs from the last one fetched:\n%s\n%s", body, first)
	}
}

func TestE2EModelsNeverFetched(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	p := newTestProxy(t, func(c *fileConfig) {
		c.APIEndpoints = []endpointConfig{{Name: "down", URL: closed, Weight: 1}}
	})
	resp, body := p.Get("/v1/models")
	if resp.StatusCode != 502 {
		t.Fatalf("status %d, want 502: %s", resp.StatusCode, body)
	}
	var e struct {
		Error struct {
			Message, Type string
			Code          *string
		}
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("want an OpenAI error body, got %s", body)
	}
}
