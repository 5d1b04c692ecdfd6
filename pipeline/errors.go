package pipeline

import "strconv"

// Error is an answer in OpenAI's error shape; the front end renders it as
// {"error":{"message":..,"type":..,"param":..,"code":..}}.
type Error struct {
	Status  int
	Message string
	Type    string
	Param   string // empty renders as null
	Code    string // empty renders as null
}

func (e *Error) Error() string { return strconv.Itoa(e.Status) + " " + e.Message }

func invalidRequest(param, msg string) *Error {
	return &Error{Status: 400, Message: msg, Type: "invalid_request_error", Param: param}
}

// errOverloaded is the answer when a stage queue stays full past the request's deadline.
var errOverloaded = &Error{Status: 503, Message: "llmcache is overloaded; retry later", Type: "server_error", Code: "overloaded"}

var errQueueTimeout = &Error{Status: 503, Message: "timed out waiting for a free upstream slot (queue_timeout_seconds); retry later", Type: "server_error", Code: "overloaded"}

var errCacheMiss = &Error{Status: 404, Message: "no cached answer for this request and the cache mode is read_only", Type: "invalid_request_error", Code: "cache_miss"}

// fail answers r with e and hands it back to the front end.
func (r *Request) fail(e *Error) {
	r.Resp.Status = e.Status
	r.Resp.Err = e
	if e.Status == 503 {
		r.Resp.RetryAfter = "1"
	}
	r.finish()
}
