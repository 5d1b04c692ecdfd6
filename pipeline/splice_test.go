package pipeline

import (
	"bytes"
	"testing"

	"llmcache/pipeline/canon"
)

// TestUpstreamBodyUneditedFindsTheModel: a body sent as it came keeps every byte, and the model's place found
// without a second parse is the one a parse of the copy gives (the endpoint's model override is spliced
// there): with the model first, last, nested too, absent, or amid spacing.
func TestUpstreamBodyUneditedFindsTheModel(t *testing.T) {
	cfg := DefaultConfig()
	for _, body := range []string{
		`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`,
		`{"messages":[{"role":"user","content":"model"}],"model":"m"}`,
		"{ \"x\": {\"model\":\"inner\"} ,\n \"model\" :\n \"a\" }",
		`{"messages":[]}`,
		`{"model":""}`,
	} {
		var parser, sub, check canon.Parser
		r := &Request{Kind: KindChat, Body: []byte(body)}
		got, ms, me, err := cfg.upstreamBody(&parser, &sub, r)
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		want, wms, wme, err := editedBody(&check, r.Body, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) || ms != wms || me != wme {
			t.Errorf("%s: got %q model at [%d,%d), want %q at [%d,%d)", body, got, ms, me, want, wms, wme)
		}
		if &got[0] == &r.Body[0] {
			t.Errorf("%s: the upstream body shares the request's buffer", body)
		}
	}
}
