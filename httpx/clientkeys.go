package httpx

import (
	"crypto/subtle"

	"github.com/valyala/fasthttp"

	"llmcache/pipeline"
)

// ClientKey is one of llmcache's own API keys (client_keys). With any configured, every API request must
// present one as its Bearer token; the key is never forwarded upstream.
type ClientKey struct {
	Key string
	// Namespace is the key's own: its requests live in it, and a namespace they name nests inside it
	// ("team-a/x"), so that no key reads another's entries. "" = none: its requests live in the namespaces
	// they name, except those of other keys (403).
	Namespace string
}

// clientKey is a ClientKey ready for the request path: its tenant is made once and shared by its requests.
type clientKey struct {
	key    []byte
	tenant *pipeline.Tenant
}

// newClientKeys prepares keys; main has checked them (present, distinct, namespaces not nested).
func newClientKeys(keys []ClientKey) []clientKey {
	out := make([]clientKey, len(keys))
	for i, k := range keys {
		t := &pipeline.Tenant{Namespace: k.Namespace}
		if k.Namespace == "" {
			seen := map[string]bool{}
			for _, other := range keys {
				if other.Namespace != "" && !seen[other.Namespace] {
					seen[other.Namespace] = true
					t.Reserved = append(t.Reserved, other.Namespace)
				}
			}
		}
		out[i] = clientKey{key: []byte(k.Key), tenant: t}
	}
	return out
}

// bearer returns the token of an Authorization header of the Bearer scheme, nil for anything else.
func bearer(authorization []byte) []byte {
	if len(authorization) <= len("Bearer ") || !lowerEq(authorization[:len("bearer ")], "bearer ") {
		return nil
	}
	return authorization[len("Bearer "):]
}

// tenant returns the tenant of the client key ctx presents, nil when it presents none of them. Every key is
// compared, in constant time, so that the time taken tells nothing of which keys are close.
func (s *Server) tenant(ctx *fasthttp.RequestCtx) *pipeline.Tenant {
	token := bearer(ctx.Request.Header.Peek("Authorization"))
	var found *pipeline.Tenant
	for i := range s.keys {
		if subtle.ConstantTimeCompare(token, s.keys[i].key) == 1 && token != nil {
			found = s.keys[i].tenant
		}
	}
	return found
}

var errNoClientKey = &pipeline.Error{Status: 401, Type: "invalid_request_error", Code: "invalid_api_key",
	Message: "this llmcache wants one of its client keys as a Bearer token (Authorization: Bearer <key>); none was given, or it is not one of them"}

// refuseNoKey answers a request without a valid client key.
func refuseNoKey(ctx *fasthttp.RequestCtx, e *pipeline.Error) {
	ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="llmcache"`)
	writeError(ctx, e)
}

// watcher reports whether ctx may read /stats, /metrics and /dashboard, answering it when not: anyone
// without client keys (a loopback bind, or a network the operator trusts), else a client key or the
// admin token.
func (s *Server) watcher(ctx *fasthttp.RequestCtx) bool {
	if len(s.keys) == 0 || s.tenant(ctx) != nil {
		return true
	}
	if s.cfg.AdminToken != "" {
		token := bearer(ctx.Request.Header.Peek("Authorization"))
		if subtle.ConstantTimeCompare(token, []byte(s.cfg.AdminToken)) == 1 {
			return true
		}
	}
	refuseNoKey(ctx, &pipeline.Error{Status: 401, Type: "invalid_request_error", Code: "invalid_api_key",
		Message: "with client keys set, /stats, /metrics and /dashboard want a client key or the admin token as a Bearer token"})
	return false
}

// TenantOf returns what gives the lines of a batch the tenant of the client key that made it, found by
// that key's namespace, which is what a batch records (batch.Config.Tenant); nil without client keys. A
// namespace no key has any more keeps its own; a batch of a key without one gets the namespaces of every
// key reserved, as such a key does.
func TenantOf(keys []ClientKey) func(owner string) *pipeline.Tenant {
	if len(keys) == 0 {
		return nil
	}
	ck := newClientKeys(keys)
	var reserved []string
	for _, k := range ck {
		if k.tenant.Namespace != "" {
			reserved = append(reserved, k.tenant.Namespace)
		}
	}
	return func(owner string) *pipeline.Tenant {
		for _, k := range ck {
			if k.tenant.Namespace == owner {
				return k.tenant
			}
		}
		if owner == "" {
			return &pipeline.Tenant{Reserved: reserved}
		}
		return &pipeline.Tenant{Namespace: owner}
	}
}
