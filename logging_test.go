package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestStartLineMasksHeaderValues: the start-up line shows every configured header's name, but the value
// only of a few known-harmless ones; a credential under a name nobody foresaw stays out of the log.
func TestStartLineMasksHeaderValues(t *testing.T) {
	cfg := defaultConfig()
	secretNames := []string{"X-Authorization", "X-Auth", "X-Api-Password", "X-Credentials", "X-Goog-Signature",
		"Session", "Authorization", "X-Api-Key", "Cookie", "X-Whatever"}
	cfg.APIHeaders = map[string]string{"User-Agent": "llmcache-test/1.0", "Content-Type": "application/json"}
	endpointHeaders := map[string]string{"Accept": "application/json"}
	for _, name := range secretNames {
		cfg.APIHeaders[name] = "global-secret-" + name
		endpointHeaders[strings.ToLower(name)] = "endpoint-secret-" + name
	}
	cfg.APIEndpoints = []endpointConfig{{URL: "http://127.0.0.1:9", Headers: endpointHeaders}}
	var out bytes.Buffer
	newLogger(&out, "text", slog.LevelInfo).Info("configuration", effectiveConfig(&cfg)...)
	line := out.String()
	if strings.Contains(line, "secret-") {
		t.Errorf("a header value reached the log:\n%s", line)
	}
	for _, shown := range []string{"llmcache-test/1.0", "X-Goog-Signature", "x-auth", "Session"} {
		if !strings.Contains(line, shown) {
			t.Errorf("the line lacks %q:\n%s", shown, line)
		}
	}
}
