package pipeline

import (
	"fmt"
	"testing"
)

// keyedFields is what keying sets on a request, for comparing two ways of keying it.
type keyedFields struct {
	err                  string
	key                  Key
	controls             Controls
	thinking             Thinking
	stream, includeUsage bool
	modelStart, modelEnd int
	items                string // the per-item keys (batched completions), written out
}

func keyedOf(r *Request, e *Error) keyedFields {
	f := keyedFields{key: r.Key, controls: r.Controls, thinking: r.Thinking, stream: r.Stream, includeUsage: r.includeUsage,
		modelStart: r.modelStart, modelEnd: r.modelEnd, items: fmt.Sprint(r.items)}
	if e != nil {
		f = keyedFields{err: e.Message}
	}
	return f
}

// memoRequest builds a request from fuzz inputs.
func memoRequest(body []byte, completion bool, namespace string, sample int64, mode uint8, noCache bool, tenant *Tenant) *Request {
	r := &Request{Kind: KindChat, Body: append([]byte(nil), body...), Controls: DefaultControls(Mode(mode % 4)), Tenant: tenant}
	if completion {
		r.Kind = KindCompletion
	}
	r.Controls.Namespace, r.Controls.Sample, r.Controls.NoCache = namespace, sample, noCache
	return r
}

// FuzzKeyMemo: keying through the memo gives, for any request, exactly what keying it afresh gives, even
// right after a different request (other bytes, other header controls, another client key) was memoised:
// the memo never hands one request another's key.
func FuzzKeyMemo(f *testing.F) {
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`), []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`), false, "", "", int64(0), int64(0), uint8(0), uint8(0), false, false)
	f.Add([]byte(`{"model":"m","prompt":"a","cache":{"namespace":"x"}}`), []byte(`{"model":"m","prompt":"a","cache":{"namespace":"y"}}`), true, "ns", "ns", int64(1), int64(2), uint8(1), uint8(3), true, false)
	f.Add([]byte(`{"model":"m","prompt":["a","b"],"echo":true,"logprobs":1,"max_tokens":0}`), []byte(`{"model":"m","prompt":["b","a"]}`), true, "", "", int64(0), int64(0), uint8(0), uint8(0), false, false)
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"é"}]}`), []byte(`{"model":"m","messages":[{"role":"user","content":"\u00e9"}]}`), false, "a", "b", int64(0), int64(0), uint8(0), uint8(0), false, true)
	cfg := DefaultConfig()
	tenants := []*Tenant{nil, {Namespace: "team-a"}}
	f.Fuzz(func(t *testing.T, body1, body2 []byte, completion bool, ns1, ns2 string, s1, s2 int64, m1, m2 uint8, nc, sameTenant bool) {
		ks := newKeyers(&cfg)
		fresh := newKeyer(&cfg)
		t2 := tenants[1]
		if sameTenant {
			t2 = tenants[0]
		}
		for _, in := range []struct {
			body   []byte
			ns     string
			sample int64
			mode   uint8
			tenant *Tenant
		}{{body1, ns1, s1, m1, tenants[0]}, {body2, ns2, s2, m2, t2}, {body1, ns1, s1, m1, tenants[0]}, {body2, ns2, s2, m2, t2}} {
			viaMemo := memoRequest(in.body, completion, in.ns, in.sample, in.mode, nc, in.tenant)
			direct := memoRequest(in.body, completion, in.ns, in.sample, in.mode, nc, in.tenant)
			got, want := keyedOf(viaMemo, ks.key(viaMemo)), keyedOf(direct, fresh.key(direct))
			if got != want {
				t.Fatalf("body %q ns %q sample %d mode %d: through the memo %+v, afresh %+v", in.body, in.ns, in.sample, in.mode, got, want)
			}
		}
	})
}

// TestKeyMemoHits: a repeated request is keyed from the memo (the keyer's parser is not run again), and a
// request differing in one header control is not.
func TestKeyMemoHits(t *testing.T) {
	cfg := DefaultConfig()
	ks := newKeyers(&cfg)
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"memo"}]}`)
	first := memoRequest(body, false, "", 0, 0, false, nil)
	if e := ks.key(first); e != nil {
		t.Fatal(e)
	}
	again := memoRequest(body, false, "", 0, 0, false, nil)
	if !ks.memo.lookup(again, ks.memo.sum(again)) || again.Key != first.Key {
		t.Fatalf("the same bytes and controls are not found in the memo")
	}
	other := memoRequest(body, false, "elsewhere", 0, 0, false, nil)
	if ks.memo.lookup(other, ks.memo.sum(other)) {
		t.Fatalf("a request in another namespace was found in the memo")
	}
}
