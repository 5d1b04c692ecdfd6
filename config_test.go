package main

import (
	"reflect"
	"testing"
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
