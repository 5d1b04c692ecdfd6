package httpx

import (
	"net"
	"testing"
)

// TestAdminRefusal covers the decision for clients a loopback test cannot be: remote addresses.
func TestAdminRefusal(t *testing.T) {
	loop, remote := net.ParseIP("127.0.0.1"), net.ParseIP("203.0.113.7")
	for _, tc := range []struct {
		name   string
		token  string
		auth   string
		ip     net.IP
		status int // 0 = allowed
	}{
		{"loopback, no token configured", "", "", loop, 0},
		{"IPv6 loopback, no token configured", "", "", net.ParseIP("::1"), 0},
		{"remote, no token configured", "", "Bearer anything", remote, 403},
		{"remote with the token", "s3cret", "Bearer s3cret", remote, 0},
		{"remote with a wrong token", "s3cret", "Bearer nope", remote, 401},
		{"loopback without the configured token", "s3cret", "", loop, 401},
		{"token without Bearer", "s3cret", "s3cret", loop, 401},
	} {
		e := adminRefusal(tc.token, []byte(tc.auth), tc.ip)
		switch {
		case tc.status == 0 && e != nil:
			t.Errorf("%s: refused with %d, want allowed", tc.name, e.Status)
		case tc.status != 0 && (e == nil || e.Status != tc.status):
			t.Errorf("%s: got %v, want %d", tc.name, e, tc.status)
		}
	}
}
