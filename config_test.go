package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"llmcache/actors"
	"llmcache/httpx/proxy"
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

// TestDefaultsAgree: the file's defaults, composed into the proxy's configuration, are every package's own
// defaults (proxy.DefaultConfig, made of pipeline.DefaultConfig, httpx.DefaultConfig and the actors'), so
// config.toml (checked against the file's defaults above), main and the packages cannot drift apart.
func TestDefaultsAgree(t *testing.T) {
	file := defaultConfig()
	got, err := file.proxyConfig(func(string) string { return "" }, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := proxy.DefaultConfig()
	got.Upstream.Getenv = nil // the environment reader: a function, set by main
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the file's defaults composed differ from the packages' defaults:\n got  %+v\n want %+v", got, want)
		for _, part := range []struct {
			name      string
			got, want any
		}{{"pipeline", got.Pipeline, want.Pipeline}, {"http", got.HTTP, want.HTTP}, {"writer", got.Writer, want.Writer},
			{"idle", *got.IdleFlush, *want.IdleFlush}, {"maintenance", *got.Maintenance, *want.Maintenance}, {"stats", got.Stats, want.Stats}} {
			if !reflect.DeepEqual(part.got, part.want) {
				t.Errorf("%s:\n got  %+v\n want %+v", part.name, part.got, part.want)
			}
		}
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

// TestMaxHeaderBytesTooSmallRefused: below 4 KiB ordinary requests would get 431.
func TestMaxHeaderBytesTooSmallRefused(t *testing.T) {
	cfg := defaultConfig()
	cfg.APIEndpoints = []endpointConfig{{URL: "http://127.0.0.1:9"}}
	cfg.MaxHeaderBytes = 1000
	if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), "max_header_bytes") {
		t.Errorf("max_header_bytes = 1000: err %v, want one naming the key", err)
	}
}

// TestClientKeysRefusedWhenUnsafe: client_keys that would let a key in unannounced, leak into another's
// namespace, or reach an upstream stop the start, naming the key or endpoint.
func TestClientKeysRefusedWhenUnsafe(t *testing.T) {
	withKey := []endpointConfig{{Name: "a", URL: "http://127.0.0.1:9", APIKey: "sk-a"}, {Name: "b", URL: "http://127.0.0.1:8", APIKeyEnv: "B_KEY"}}
	env := map[string]string{"TEAM_A_KEY": "from-env"}
	getenv := func(name string) string { return env[name] }
	for _, c := range []struct {
		keys      []clientKeyConfig
		endpoints []endpointConfig
		names     string // in the error; "" = accepted
	}{
		{[]clientKeyConfig{{KeyEnv: "TEAM_A_KEY", Namespace: "team-a"}, {Key: "literal"}}, withKey, ""},
		{[]clientKeyConfig{{Key: "one", Namespace: "team-a"}, {Key: "two", Namespace: "team-a"}}, withKey, ""}, // a rotation
		{[]clientKeyConfig{{Key: "one"}}, []endpointConfig{withKey[0], {Name: "keyless", URL: "http://127.0.0.1:7"}}, `api_endpoints[1] ("keyless")`},
		{[]clientKeyConfig{{Key: "one", KeyEnv: "TEAM_A_KEY"}}, withKey, "client_keys[0]"},
		{[]clientKeyConfig{{Namespace: "team-a"}}, withKey, "client_keys[0]"},
		{[]clientKeyConfig{{KeyEnv: "UNSET_KEY"}}, withKey, "UNSET_KEY"},
		{[]clientKeyConfig{{Key: "same"}, {Key: "same", Namespace: "x"}}, withKey, "client_keys[0] and client_keys[1]"},
		{[]clientKeyConfig{{Key: "from-env"}, {KeyEnv: "TEAM_A_KEY"}}, withKey, "client_keys[0] and client_keys[1]"},
		{[]clientKeyConfig{{Key: "one", Namespace: "team-a"}, {Key: "two", Namespace: "team-a/x"}}, withKey, "nest"},
		{[]clientKeyConfig{{Key: "one", Namespace: "team-a/"}}, withKey, "client_keys[0].namespace"},
	} {
		cfg := defaultConfig()
		cfg.APIEndpoints, cfg.ClientKeys = c.endpoints, c.keys
		err := cfg.validate()
		if err == nil {
			_, err = cfg.httpConfig(getenv)
		}
		switch {
		case c.names == "" && err != nil:
			t.Errorf("%+v: refused: %v", c.keys, err)
		case c.names != "" && (err == nil || !strings.Contains(err.Error(), c.names)):
			t.Errorf("%+v: err %v, want one naming %s", c.keys, err, c.names)
		}
	}
	cfg := defaultConfig()
	cfg.APIEndpoints, cfg.ClientKeys = withKey, []clientKeyConfig{{KeyEnv: "TEAM_A_KEY", Namespace: "team-a"}, {Key: "literal"}}
	hc, err := cfg.httpConfig(getenv)
	if err != nil || len(hc.ClientKeys) != 2 || hc.ClientKeys[0].Key != "from-env" || hc.ClientKeys[0].Namespace != "team-a" || hc.ClientKeys[1].Key != "literal" {
		t.Errorf("client keys reach the front end as %+v (%v)", hc.ClientKeys, err)
	}
}

// TestClientKeysFromTheFile: client_keys is an array of inline tables, as config.toml shows it.
func TestClientKeysFromTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.toml")
	text := `client_keys = [{ key_env = "TEAM_A_KEY", namespace = "team-a" }, { key = "literal", namespace = "" }]
[[api_endpoints]]
url = "http://127.0.0.1:9"
api_key = "sk-x"
`
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(path, false)
	if err == nil {
		err = cfg.validate()
	}
	want := []clientKeyConfig{{KeyEnv: "TEAM_A_KEY", Namespace: "team-a"}, {Key: "literal"}}
	if err != nil || !reflect.DeepEqual(cfg.ClientKeys, want) {
		t.Fatalf("client_keys = %+v (%v), want %+v", cfg.ClientKeys, err, want)
	}
	var out bytes.Buffer
	newLogger(&out, "text", slog.LevelInfo).Info("configuration", effectiveConfig(&cfg)...)
	if strings.Contains(out.String(), "literal") || !strings.Contains(out.String(), "TEAM_A_KEY") {
		t.Errorf("the start-up line shows a client key, or not its key_env:\n%s", out.String())
	}
}

// TestMaxPendingBytes: cache.max_pending_bytes defaults to 256 MiB, reaches the writer from the file, and
// must be above 0.
func TestMaxPendingBytes(t *testing.T) {
	def := defaultConfig()
	if got := writerOf(t, &def).MaxPendingBytes; got != 256<<20 {
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
		if got := writerOf(t, &cfg).MaxPendingBytes; got != c.want {
			t.Errorf("max_pending_bytes = %s reaches the writer as %d", c.value, got)
		}
	}
}

// writerOf is the writer's configuration composed from cfg.
func writerOf(t *testing.T, cfg *fileConfig) actors.WriterConfig {
	t.Helper()
	pc, err := cfg.proxyConfig(func(string) string { return "" }, nil)
	if err != nil {
		t.Fatal(err)
	}
	return pc.Writer
}
