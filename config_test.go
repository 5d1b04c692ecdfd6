package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"llmcache/pipeline"
)

// TestShippedConfigIsTheDefaults: config.toml documents every key with its default; loading it must give
// exactly the defaults (its example endpoint aside), so the file never lies about what a key does when
// left out.
func TestShippedConfigIsTheDefaults(t *testing.T) {
	got, err := loadConfig("config.toml", false)
	if err != nil {
		t.Fatalf("config.toml does not load: %v", err)
	}
	if err := got.validate(); err != nil {
		t.Fatalf("config.toml does not validate: %v", err)
	}
	if len(got.APIEndpoints) != 1 {
		t.Fatalf("config.toml has %d example endpoints, want 1", len(got.APIEndpoints))
	}
	got.APIEndpoints = nil
	if len(got.Cache.IgnoreFields) == 0 {
		got.Cache.IgnoreFields = nil // the file writes the empty list out
	}
	want := defaultConfig()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("config.toml differs from the defaults:\n got  %+v\n want %+v", got, want)
	}
}

// TestEnableThinkingFromEnvironment: ENABLE_THINKING overrides the file's enable_thinking, and reaches the
// pipeline as the forced value.
func TestEnableThinkingFromEnvironment(t *testing.T) {
	for _, c := range []struct {
		env  string
		want pipeline.Thinking
	}{{"", pipeline.ThinkingAbsent}, {"true", pipeline.ThinkingTrue}, {"false", pipeline.ThinkingFalse}, {"0", pipeline.ThinkingFalse}} {
		cfg := defaultConfig()
		cfg.APIEndpoints = []endpointConfig{{URL: "http://127.0.0.1:1"}}
		getenv := func(name string) string {
			if name == "ENABLE_THINKING" {
				return c.env
			}
			return ""
		}
		if err := applyEnv(&cfg, getenv); err != nil {
			t.Fatal(err)
		}
		pc, err := cfg.pipelineConfig(getenv)
		if err != nil {
			t.Fatal(err)
		}
		if pc.EnableThinking != c.want {
			t.Errorf("ENABLE_THINKING=%q: pipeline gets %v, want %v", c.env, pc.EnableThinking, c.want)
		}
	}
	cfg := defaultConfig()
	maybe := func(name string) string {
		if name == "ENABLE_THINKING" {
			return "maybe"
		}
		return ""
	}
	if err := applyEnv(&cfg, maybe); err == nil || !strings.Contains(err.Error(), "ENABLE_THINKING") {
		t.Errorf("a value that is not a boolean: err %v, want one naming the variable", err)
	}
}

// TestNotANumberRefused: TOML can spell nan and inf; no duration or size may take them.
func TestNotANumberRefused(t *testing.T) {
	for _, line := range []string{
		"queue_timeout_seconds = nan", "queue_timeout_seconds = inf", "eject_seconds = nan",
		"models_ttl_seconds = nan", "stats_log_interval_seconds = inf",
		"[cache_maintenance]\nretention_days = nan",
		"[[api_endpoints]]\nurl = \"http://127.0.0.1:9\"\ntimeout_seconds = nan",
	} {
		path := filepath.Join(t.TempDir(), "c.toml")
		text := line + "\n"
		if !strings.Contains(line, "api_endpoints") {
			text = line + "\n[[api_endpoints]]\nurl = \"http://127.0.0.1:9\"\n"
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadConfig(path, false)
		if err == nil {
			err = cfg.validate()
		}
		if err == nil {
			t.Errorf("%q was accepted", line)
		}
	}
}

// TestImpossibleWindowsAndDurationsRefused: an output reserve that leaves no room for a prompt, and
// durations too long for Go's time.Duration, stop the start naming the key.
func TestImpossibleWindowsAndDurationsRefused(t *testing.T) {
	for _, c := range []struct{ text, names string }{
		{"[context_trim]\nmax_context_tokens = 4096\nreserve_output_tokens = 4096\n", "reserve_output_tokens"},
		{"[context_trim]\nreserve_output_tokens = 3000\n[[api_endpoints]]\nurl = \"http://127.0.0.1:8\"\nmax_context_tokens = 2048\n", "api_endpoints[1].max_context_tokens"},
		{"queue_timeout_seconds = 1e10\n", "queue_timeout_seconds"},
		{"[cache_maintenance]\ninterval_hours = 1e7\n", "interval_hours"},
	} {
		path := filepath.Join(t.TempDir(), "c.toml")
		text := c.text + "[[api_endpoints]]\nurl = \"http://127.0.0.1:9\"\n"
		if strings.Contains(c.text, "api_endpoints") {
			text = strings.Replace(c.text, "[[api_endpoints]]", "[[api_endpoints]]\nurl = \"http://127.0.0.1:9\"\n[[api_endpoints]]", 1)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadConfig(path, false)
		if err == nil {
			err = cfg.validate()
		}
		if err == nil || !strings.Contains(err.Error(), c.names) {
			t.Errorf("%q: err %v, want one naming %s", c.text, err, c.names)
		}
	}
}

// TestMaxPendingBytes: cache.max_pending_bytes defaults to 256 MiB, reaches the writer from the file, and
// must be above 0.
func TestMaxPendingBytes(t *testing.T) {
	def := defaultConfig()
	if got := def.writerConfig().MaxPendingBytes; got != 256<<20 {
		t.Errorf("default max_pending_bytes %d, want 268435456", got)
	}
	dir := t.TempDir()
	for _, c := range []struct {
		value string
		want  int64 // 0: refused
	}{{"1000", 1000}, {"0", 0}, {"-1", 0}} {
		path := filepath.Join(dir, "c.toml")
		text := "[cache]\nmax_pending_bytes = " + c.value + "\n\n[[api_endpoints]]\nurl = \"http://127.0.0.1:1\"\n"
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadConfig(path, false)
		if err == nil {
			err = cfg.validate()
		}
		if c.want == 0 {
			if err == nil || !strings.Contains(err.Error(), "cache.max_pending_bytes") {
				t.Errorf("max_pending_bytes = %s: error %v, want one naming cache.max_pending_bytes", c.value, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("max_pending_bytes = %s: %v", c.value, err)
		}
		if got := cfg.writerConfig().MaxPendingBytes; got != c.want {
			t.Errorf("max_pending_bytes = %s reaches the writer as %d", c.value, got)
		}
	}
}
