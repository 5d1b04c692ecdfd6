package wire

import "testing"

func TestRouteURL(t *testing.T) {
	for _, c := range []struct{ base, want string }{
		{"http://h:1234", "http://h:1234/v1/chat/completions"},
		{"http://h:1234/", "http://h:1234/v1/chat/completions"},
		{"http://h:1234/v1", "http://h:1234/v1/chat/completions"},
		{"http://h:1234/v1/", "http://h:1234/v1/chat/completions"},
		{"https://x.openai.azure.com/openai/deployments/d?api-version=2024-10-21",
			"https://x.openai.azure.com/openai/deployments/d/v1/chat/completions?api-version=2024-10-21"},
		{"http://h/v1?key=X", "http://h/v1/chat/completions?key=X"},
		{"http://h/v1/?key=X&b=2", "http://h/v1/chat/completions?key=X&b=2"},
		{"http://h/v1?", "http://h/v1/chat/completions"},
	} {
		if got := RouteURL(c.base, "/chat/completions"); got != c.want {
			t.Errorf("RouteURL(%q) = %q, want %q", c.base, got, c.want)
		}
	}
}

func TestCheckBaseURL(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:1234", "https://api.openai.com/v1", "http://h/v1?api-version=1", "http://[::1]:8000/v1"} {
		if err := CheckBaseURL(ok); err != nil {
			t.Errorf("CheckBaseURL(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "ftp://h", "h:1234", "http://", "http:///v1", "http://h/v1#frag", "mailto:x@y", "http://h:99999999/", "http://h/%zz"} {
		if err := CheckBaseURL(bad); err == nil {
			t.Errorf("CheckBaseURL(%q) = nil, want an error", bad)
		}
	}
}
