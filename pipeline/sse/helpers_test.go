package sse

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// assemble runs a whole stream through a Splitter (in pieces of 7 bytes, to cross event boundaries) and an
// Assembler. eventErr is the first error Event returned.
func assemble(kind Kind, stream []byte) (body []byte, ok bool, reason string, eventErr error) {
	var s Splitter
	a := NewAssembler(kind)
	emit := func(ev []byte) {
		if err := a.Event(ev); err != nil && eventErr == nil {
			eventErr = err
		}
	}
	for len(stream) > 0 {
		n := min(7, len(stream))
		s.Feed(stream[:n], emit)
		stream = stream[n:]
	}
	body, ok, reason = a.Result()
	return body, ok, reason, eventErr
}

// mustAssemble assembles a stream that must be complete.
func mustAssemble(t testing.TB, kind Kind, stream string) []byte {
	t.Helper()
	body, ok, reason, err := assemble(kind, []byte(stream))
	if err != nil || !ok {
		t.Fatalf("assemble: ok=%v reason=%q err=%v", ok, reason, err)
	}
	if !json.Valid(body) {
		t.Fatalf("assembled body is not JSON: %s", body)
	}
	return body
}

// decode parses JSON into generic values, keeping numbers as written.
func decode(t testing.TB, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("cannot decode %s: %v", b, err)
	}
	return v
}

// sameJSON fails the test unless got and want are the same JSON value.
func sameJSON(t testing.TB, got, want []byte) {
	t.Helper()
	if !reflect.DeepEqual(decode(t, got), decode(t, want)) {
		t.Fatalf("JSON differs:\n got %s\nwant %s", got, want)
	}
}

// topKeys returns the keys of a JSON object in the order they are written.
func topKeys(t testing.TB, b []byte) []string {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", b)
	}
	var keys []string
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := d.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// sseStream builds a stream from chunk JSON texts, each sent as "data: <chunk>\n\n", then "data: [DONE]".
func sseStream(chunks ...string) string {
	var b strings.Builder
	for _, c := range chunks {
		b.WriteString("data: ")
		b.WriteString(c)
		b.WriteString("\n\n")
	}
	b.WriteString("data: [DONE]\n\n")
	return b.String()
}

// events splits a synthesized stream into the data of its events, checking the framing on the way.
func events(t testing.TB, stream []byte) []string {
	t.Helper()
	var s Splitter
	var out []string
	s.Feed(stream, func(ev []byte) {
		if !bytes.HasPrefix(ev, []byte("data: ")) || !bytes.HasSuffix(ev, []byte("\n\n")) || bytes.Count(ev, []byte("\n")) != 2 {
			t.Fatalf("event is not one data line: %q", ev)
		}
		data, typ, ok := Data(ev)
		if !ok || typ != "" {
			t.Fatalf("event %q: data ok=%v type=%q", ev, ok, typ)
		}
		out = append(out, string(data))
	})
	if s.Pending() {
		t.Fatalf("stream ends inside an event: %q", stream)
	}
	return out
}
