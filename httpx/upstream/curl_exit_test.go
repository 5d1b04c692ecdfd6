package upstream

import (
	"os"
	"path/filepath"
	"testing"

	"llmcache/pipeline/wire"
)

// TestCurlAnsweredWhileItsStderrIsHeld: a curl that printed a whole answer and exited 0 is a success, even
// when something it started still holds its stderr open so that the process's I/O is not over when
// exec's WaitDelay passes (seen under load as ~4% of calls made twice: the answer read, then thrown away
// as "exec: WaitDelay expired before I/O complete", and the call retried).
func TestCurlAnsweredWhileItsStderrIsHeld(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "curl")
	script := "#!/bin/sh\n" +
		"sleep 3 >/dev/null &\n" + // inherits stderr: exec's copy of it cannot end before the sleep does
		"printf 'HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: 11\\r\\n\\r\\n{\"ok\":true}'\n" +
		"exit 0\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := newCurl(Options{}, bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ep := endpoint("http://127.0.0.1:9")
	var resp wire.Response
	if err := c.Do(request(ep, "/chat/completions"), &resp); err != nil {
		t.Fatalf("a whole answer and exit 0: %v", err)
	}
	if resp.Status != 200 || string(resp.Body) != `{"ok":true}` {
		t.Fatalf("status %d body %q", resp.Status, resp.Body)
	}
}
