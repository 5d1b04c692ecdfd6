package httpx

import (
	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"llmcache/pipeline"
)

// errorBody is OpenAI's error shape; Param and Code are null when empty.
type errorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

// writeError answers e in OpenAI's error shape.
func writeError(ctx *fasthttp.RequestCtx, e *pipeline.Error) {
	var b errorBody
	b.Error.Message, b.Error.Type = e.Message, e.Type
	if e.Param != "" {
		b.Error.Param = &e.Param
	}
	if e.Code != "" {
		b.Error.Code = &e.Code
	}
	out, _ := json.Marshal(&b)
	ctx.SetStatusCode(e.Status)
	ctx.SetContentType("application/json")
	if e.Status == fasthttp.StatusServiceUnavailable {
		ctx.Response.Header.Set("Retry-After", "1")
	}
	ctx.SetBody(out)
}

func notFound(ctx *fasthttp.RequestCtx) {
	writeError(ctx, &pipeline.Error{Status: 404, Type: "invalid_request_error", Code: "unknown_url",
		Message: "Unknown request URL: " + string(ctx.Method()) + " " + string(ctx.Path()) + ". Please check the URL for typos."})
}

func methodNotAllowed(ctx *fasthttp.RequestCtx) {
	writeError(ctx, &pipeline.Error{Status: 405, Type: "invalid_request_error", Code: "method_not_allowed",
		Message: "Method " + string(ctx.Method()) + " is not allowed for " + string(ctx.Path())})
}
