package httpx

import (
	"bytes"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"strconv"
	"time"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"llmcache/pipeline"
)

// adminRefusal decides who may use the admin routes: with an admin_token, whoever presents it as a Bearer
// token (401 otherwise); without one, loopback clients only (403 otherwise). Web pages of another origin
// are refused before (originRefusal), whatever they present.
func adminRefusal(token string, authorization []byte, ip net.IP) *pipeline.Error {
	if token != "" {
		want := []byte("Bearer " + token)
		if subtle.ConstantTimeCompare(authorization, want) != 1 {
			return &pipeline.Error{Status: 401, Type: "invalid_request_error", Code: "invalid_admin_token",
				Message: "the admin API needs the admin_token as a Bearer token"}
		}
		return nil
	}
	if !ip.IsLoopback() {
		return &pipeline.Error{Status: 403, Type: "invalid_request_error", Code: "admin_forbidden",
			Message: "the admin API answers loopback clients only unless admin_token is set"}
	}
	return nil
}

// deleteRequest is the body of POST /cache/delete: keys, or a filter.
type deleteRequest struct {
	Keys             []string `json:"keys"`
	Namespace        *string  `json:"namespace"`
	Model            string   `json:"model"`
	OlderThanSeconds *float64 `json:"older_than_seconds"`
}

// admin reports whether ctx may use the admin routes, answering it when not.
func (s *Server) admin(ctx *fasthttp.RequestCtx) bool {
	e := originRefusal(ctx)
	if e == nil {
		e = adminRefusal(s.cfg.AdminToken, ctx.Request.Header.Peek("Authorization"), ctx.RemoteIP())
	}
	if e != nil {
		writeError(ctx, e)
		return false
	}
	return true
}

func (s *Server) cacheDelete(ctx *fasthttp.RequestCtx) {
	if !s.admin(ctx) {
		return
	}
	var req deleteRequest
	dec := json.NewDecoder(bytes.NewReader(ctx.PostBody()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(ctx, &pipeline.Error{Status: 400, Type: "invalid_request_error",
			Message: "cache/delete takes {\"keys\":[...]} or {\"namespace\":..,\"model\":..,\"older_than_seconds\":..}: " + err.Error()})
		return
	}
	var f pipeline.Selection
	for _, k := range req.Keys {
		b, err := hex.DecodeString(k)
		if err != nil || len(b) != 32 {
			writeError(ctx, &pipeline.Error{Status: 400, Type: "invalid_request_error", Param: "keys",
				Message: "keys must be 64-hex-digit cache keys (as in X-Cache-Key); got " + strconv.Quote(k)})
			return
		}
		f.Keys = append(f.Keys, pipeline.Key(b))
	}
	f.Namespace, f.Model = req.Namespace, req.Model
	if req.OlderThanSeconds != nil {
		if *req.OlderThanSeconds < 0 {
			writeError(ctx, &pipeline.Error{Status: 400, Type: "invalid_request_error", Param: "older_than_seconds", Message: "older_than_seconds must be 0 or more"})
			return
		}
		f.OlderThan = time.Now().Add(-time.Duration(*req.OlderThanSeconds * float64(time.Second)))
	}
	if len(f.Keys) == 0 && f.Namespace == nil && f.Model == "" && f.OlderThan.IsZero() {
		writeError(ctx, &pipeline.Error{Status: 400, Type: "invalid_request_error",
			Message: "say what to delete: keys, namespace, model or older_than_seconds (POST /cache/flushall empties the cache)"})
		return
	}
	s.deleted(ctx, f)
}

func (s *Server) cacheFlushAll(ctx *fasthttp.RequestCtx) {
	if !s.admin(ctx) {
		return
	}
	s.deleted(ctx, pipeline.Selection{All: true})
}

func (s *Server) deleted(ctx *fasthttp.RequestCtx, f pipeline.Selection) {
	n, err := s.pipe.Delete(f)
	if err != nil {
		writeError(ctx, &pipeline.Error{Status: 500, Type: "server_error", Code: "cache_db_error", Message: "cannot delete: " + err.Error()})
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"deleted":` + strconv.FormatInt(n, 10) + `}`)
}
