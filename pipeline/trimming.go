package pipeline

import (
	"errors"

	"llmcache/pipeline/trim"
)

// trimFor returns body (already carrying ep's model override) cut to fit ep's context window (its max_context_tokens, else the global one),
// remembering the result on c so that a retry on an endpoint with the same window does not count again.
// It runs on the miss path only, in the call's goroutine, on the copy that goes upstream: the key was
// computed from the client's request, so hits never tokenize. A request whose kept part alone is too long
// gets a 400 context_length_exceeded, or goes untrimmed with on_overflow = "pass"; before the 400 the
// dispatcher tries the endpoints with larger windows, if any.
func (p *Pipeline) trimFor(c *call, ep *Endpoint, body []byte) ([]byte, *Error) {
	window := p.cfg.Trim.MaxContextTokens
	if ep.MaxContextTokens > 0 {
		window = ep.MaxContextTokens
	}
	if c.trimBody != nil && c.trimBudget == window && c.trimModel == ep.Model {
		return c.trimBody, nil // a retry: same window, same model override, same body
	}
	p.stats.trimRuns.Add(1)
	res, err := trim.Trim(body, trim.Options{MaxContextTokens: window, ReserveOutputTokens: p.cfg.Trim.ReserveOutputTokens, Tokenizer: p.tokenizer})
	switch {
	case errors.Is(err, trim.ErrOverflow):
		p.stats.trimOverflows.Add(1)
		if p.cfg.Trim.Pass {
			return body, nil
		}
		c.minWindow = window + 1 // the dispatcher may find an endpoint with a larger window
		return nil, &Error{Status: 400, Type: "invalid_request_error", Code: "context_length_exceeded", Param: "messages",
			Message: "the messages that must be kept (system and developer messages and the last turn) do not fit the model's context window: " + err.Error()}
	case err != nil:
		// The keying stage validated the request; a body trim cannot read goes as it is.
		return body, nil
	}
	if res.Dropped > 0 {
		p.stats.trimmed.Add(1)
		p.stats.trimDropped.Add(int64(res.Dropped))
	}
	c.trimBudget, c.trimModel, c.trimBody, c.trimDropped = window, ep.Model, res.Body, res.Dropped
	return res.Body, nil
}
