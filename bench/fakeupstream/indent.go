package fakeupstream

import (
	"bytes"
	stdjson "encoding/json"

	"github.com/valyala/fasthttp"
)

// indentBody lays out a finished JSON answer as api.openai.com does: its
// answers are indented by two spaces, its error bodies by four, and both end
// with a newline. Streams and bodies that are not JSON are left alone.
func indentBody(ctx *fasthttp.RequestCtx) {
	r := &ctx.Response
	if r.IsBodyStream() || !bytes.HasPrefix(r.Header.ContentType(), ctJSON) {
		return
	}
	body := r.Body()
	indent := "  "
	if r.StatusCode() >= 400 {
		indent = "    "
	}
	var b bytes.Buffer
	b.Grow(len(body) * 2)
	if stdjson.Indent(&b, body, "", indent) != nil {
		return
	}
	b.WriteByte('\n')
	r.SetBody(b.Bytes())
}
