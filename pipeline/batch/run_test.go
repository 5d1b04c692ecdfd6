package batch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRecoverLinesCutsATornTail: what a crash left after the last whole line of an output file (a write cut
// short, bytes that are not a result) is cut off; every whole line before it is a line done.
func TestRecoverLinesCutsATornTail(t *testing.T) {
	whole := encodeLine(nil, []byte(`"a"`), 200, []byte(`{"x": 1}`), true)
	whole = encodeLine(whole, []byte(`"b \"\\"`), 400, []byte(`not json`), false)
	cut := encodeLine(nil, []byte(`"c"`), 200, []byte(`{"x":2}`), true)
	for _, tail := range []string{"", string(cut[:len(cut)-1]), string(cut[:40]), "\x00\x00\x00\n", "{}\n" + string(whole)} {
		path := filepath.Join(t.TempDir(), "out.jsonl")
		if err := os.WriteFile(path, append(append([]byte(nil), whole...), tail...), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		done := map[string]struct{}{}
		size, lines, err := recoverLines(f, done)
		f.Close()
		if _, ok := done["b \"\\"]; err != nil || size != int64(len(whole)) || lines != 2 || len(done) != 2 || !ok {
			t.Fatalf("tail %q: size %d lines %d done %v err %v; want %d bytes, 2 lines", tail, size, lines, done, err, len(whole))
		}
		if b, _ := os.ReadFile(path); string(b) != string(whole) {
			t.Fatalf("tail %q: file after recovery %q", tail, b)
		}
	}
}

// TestEncodeLine: a result line is one line of OpenAI's shape; an indented body is compacted and a body that
// is not JSON becomes a JSON string.
func TestEncodeLine(t *testing.T) {
	l := string(encodeLine(nil, []byte(`"id-1"`), 200, []byte("{\n  \"a\": [1, 2]\n}\n"), true))
	if !strings.HasPrefix(l, `{"id":"batch_req_`) || !strings.Contains(l, `"custom_id":"id-1","response":{"status_code":200,"request_id":"`) ||
		!strings.HasSuffix(l, `"body":{"a":[1,2]}},"error":null}`+"\n") || strings.Count(l, "\n") != 1 {
		t.Fatalf("line %q", l)
	}
	if l := string(encodeLine(nil, []byte(`"x"`), 502, []byte("<html>bad gateway</html>"), false)); !strings.Contains(l, `"body":"\u003chtml\u003ebad gateway\u003c/html\u003e"`) &&
		!strings.Contains(l, `"body":"<html>bad gateway</html>"`) {
		t.Fatalf("line %q", l)
	}
}

// TestAppendCompactValid: the fast compaction of answers gives what encoding/json's checking one gives,
// strings (with spaces, escaped quotes and backslashes) untouched.
func TestAppendCompactValid(t *testing.T) {
	for _, in := range []string{
		`{}`, "{\n  \"a\" : [ 1 ,\t2 ],\r\n  \"b\": \"x y\\\" z\\\\\", \"c\": {\"d\": null}\n}\n",
		`"a string with spaces"`, ` [ true , false ] `, `{"e":"\u00e9 \\"}`,
	} {
		if got, want := string(appendCompactValid(nil, []byte(in))), string(appendCompactJSON(nil, []byte(in))); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}
