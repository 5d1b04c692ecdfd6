package sse

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// split feeds data to a new Splitter in pieces of the given sizes (the rest in one last piece) and returns
// copies of the events and whether an event was left pending.
func split(data []byte, sizes ...int) (events []string, pending bool) {
	var s Splitter
	emit := func(ev []byte) { events = append(events, string(ev)) }
	for _, n := range sizes {
		n = min(n, len(data))
		s.Feed(data[:n], emit)
		data = data[n:]
	}
	s.Feed(data, emit)
	return events, s.Pending()
}

// sameEvents reports whether events from split feeding (got) match those of feeding the whole stream (want):
// equal, except that an event whose final "\r\n" was split after the '\r' ends at the '\r' (see Feed).
func sameEvents(got, want []string) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d events, want %d:\n got %q\nwant %q", len(got), len(want), got, want)
	}
	for i := range got {
		if got[i] != want[i] && !(strings.HasSuffix(got[i], "\r") && got[i]+"\n" == want[i]) {
			return fmt.Errorf("event %d = %q, want %q", i, got[i], want[i])
		}
		gd, gt, gok := Data([]byte(got[i]))
		wd, wt, wok := Data([]byte(want[i]))
		if !bytes.Equal(gd, wd) || gt != wt || gok != wok {
			return fmt.Errorf("event %d parses as (%q, %q, %v), want (%q, %q, %v)", i, gd, gt, gok, wd, wt, wok)
		}
	}
	return nil
}

const multiEventStream = ": keep-alive comment\n\n" +
	"data: {\"a\":1}\n\n" +
	"event: message\ndata: first line\ndata:second line\nid: 7\nretry: 1000\n\n" +
	"data: crlf\r\n\r\n" +
	"data: cr\r\r" +
	"data: mixed\r\n\n" +
	"event: error\ndata: {\"error\":{\"message\":\"boom\"}}\n\n" +
	"data\n\n" +
	"data: [DONE]\n\n"

var multiEventWant = []string{
	": keep-alive comment\n\n",
	"data: {\"a\":1}\n\n",
	"event: message\ndata: first line\ndata:second line\nid: 7\nretry: 1000\n\n",
	"data: crlf\r\n\r\n",
	"data: cr\r\r",
	"data: mixed\r\n\n",
	"event: error\ndata: {\"error\":{\"message\":\"boom\"}}\n\n",
	"data\n\n",
	"data: [DONE]\n\n",
}

func TestSplitterWhole(t *testing.T) {
	got, pending := split([]byte(multiEventStream))
	if err := sameEvents(got, multiEventWant); err != nil {
		t.Fatal(err)
	}
	if pending {
		t.Error("Pending after a complete stream")
	}
	if strings.Join(got, "") != multiEventStream {
		t.Error("events fed whole do not add up to the stream")
	}
}

// Every single cut point, and every pair of cut points, gives the same events as feeding the stream whole.
func TestSplitterEverySplit(t *testing.T) {
	data := []byte(multiEventStream)
	for i := 0; i <= len(data); i++ {
		got, pending := split(data, i)
		if err := sameEvents(got, multiEventWant); err != nil {
			t.Fatalf("cut at %d: %v", i, err)
		}
		if pending {
			t.Fatalf("cut at %d: Pending after a complete stream", i)
		}
		for j := i; j <= len(data); j += 3 {
			got, _ := split(data, i, j-i)
			if err := sameEvents(got, multiEventWant); err != nil {
				t.Fatalf("cuts at %d and %d: %v", i, j, err)
			}
		}
	}
	sizes := make([]int, len(data))
	for i := range sizes {
		sizes[i] = 1
	}
	got, _ := split(data, sizes...)
	if err := sameEvents(got, multiEventWant); err != nil {
		t.Fatalf("byte by byte: %v", err)
	}
}

func TestSplitterCRLFSplitAtCR(t *testing.T) {
	var s Splitter
	var got []string
	emit := func(ev []byte) { got = append(got, string(ev)) }
	s.Feed([]byte("data: a\r\n\r"), emit)
	// The event is out at once: a live stream must not wait for a '\n' that may never come.
	if len(got) != 1 || got[0] != "data: a\r\n\r" {
		t.Fatalf("after the '\\r': %q", got)
	}
	s.Feed([]byte("\ndata: b\r\n\r\n"), emit) // the '\n' completes the "\r\n" and is no empty line
	if len(got) != 2 || got[1] != "data: b\r\n\r\n" || s.Pending() {
		t.Fatalf("events %q, pending %v", got, s.Pending())
	}
	// A '\r' that ends a non-empty line at the end of a Feed: the '\n' after it is kept in the event.
	s.Feed([]byte("data: c\r"), emit)
	s.Feed([]byte("\n"), emit)
	s.Feed([]byte("\r\n"), emit)
	if len(got) != 3 || got[2] != "data: c\r\n\r\n" {
		t.Fatalf("events %q", got)
	}
}

func TestSplitterPending(t *testing.T) {
	var s Splitter
	n := 0
	s.Feed([]byte("data: {\"choices\":[]}\n\ndata: {\"cho"), func([]byte) { n++ })
	if n != 1 || !s.Pending() || s.Buffered() != len("data: {\"cho") {
		t.Fatalf("events %d, pending %v, buffered %d", n, s.Pending(), s.Buffered())
	}
	s.Feed([]byte("ices\":[]}\n"), func([]byte) { n++ })
	if n != 1 || !s.Pending() {
		t.Fatalf("one '\\n' ended the event: events %d, pending %v", n, s.Pending())
	}
	s.Feed([]byte("\n"), func(ev []byte) {
		n++
		if string(ev) != "data: {\"choices\":[]}\n\n" {
			t.Errorf("event %q", ev)
		}
	})
	if n != 2 || s.Pending() {
		t.Fatalf("events %d, pending %v", n, s.Pending())
	}
	s.Feed([]byte("data: x"), func([]byte) {})
	s.Reset()
	if s.Pending() {
		t.Fatal("Pending after Reset")
	}
	s.Feed([]byte("\ndata: y\n\n"), func(ev []byte) {
		if string(ev) != "\n" && string(ev) != "data: y\n\n" {
			t.Errorf("after Reset: event %q", ev)
		}
	})
}

func TestData(t *testing.T) {
	for _, tc := range []struct {
		event, data, typ string
		ok               bool
	}{
		{"data: hello\n\n", "hello", "", true},
		{"data:hello\n\n", "hello", "", true},
		{"data:  two spaces\n\n", " two spaces", "", true},
		{"data: a\ndata: b\ndata: c\n\n", "a\nb\nc", "", true},
		{"data: a\r\ndata: b\r\n\r\n", "a\nb", "", true},
		{"data: a\rdata: b\r\r", "a\nb", "", true},
		{"data: a\ndata:\n\n", "a\n", "", true},
		{"data\n\n", "", "", true},
		{"data:\n\n", "", "", true},
		{": comment\n\n", "", "", false},
		{": comment\ndata: x\n\n", "x", "", true},
		{"event: error\ndata: {\"error\":1}\n\n", "{\"error\":1}", "error", true},
		{"event: error\n\n", "", "error", false},
		{"event:ping\ndata: {}\n\n", "{}", "ping", true},
		{"id: 1\nretry: 5\nfoo: bar\n\n", "", "", false},
		{"\xef\xbb\xbfdata: bom\n\n", "bom", "", true},
		{"data: no terminator", "no terminator", "", true},
		{"datum: x\n\n", "", "", false},
		{"Data: x\n\n", "", "", false}, // field names are case-sensitive
		{"data: [DONE]\n\n", "[DONE]", "", true},
	} {
		data, typ, ok := Data([]byte(tc.event))
		if string(data) != tc.data || typ != tc.typ || ok != tc.ok {
			t.Errorf("Data(%q) = %q, %q, %v; want %q, %q, %v", tc.event, data, typ, ok, tc.data, tc.typ, tc.ok)
		}
	}
}

func TestSplitterEventTypes(t *testing.T) {
	events, _ := split([]byte(multiEventStream))
	var types []string
	for _, ev := range events {
		_, typ, _ := Data([]byte(ev))
		types = append(types, typ)
	}
	want := []string{"", "", "message", "", "", "", "error", "", ""}
	if fmt.Sprint(types) != fmt.Sprint(want) {
		t.Fatalf("event types %q, want %q", types, want)
	}
}

// An event that arrives whole in one Feed is handed out from the caller's data, not copied.
func TestSplitterNoCopy(t *testing.T) {
	data := []byte("data: 1\n\ndata: 2\n\n")
	var s Splitter
	s.Feed(data, func(ev []byte) {
		if &ev[0] != &data[0] && &ev[0] != &data[9] {
			t.Errorf("event %q was copied", ev)
		}
	})
}
