// Package sse turns OpenAI-style server-sent event streams into stored answers and back.
//
// A streamed and a non-streamed request share one cache entry. On a streamed miss the proxy forwards the
// upstream's events live while a Splitter cuts them out of the network reads and an Assembler folds them into
// the non-streamed response object that the same request without "stream" would have returned; only a stream
// that ended properly (every choice finished, then [DONE], no error) yields a body to store. On a streamed hit,
// Synthesize writes the stored answer back out as chunks that the official SDKs accumulate into that answer.
//
// The Responses API streams typed events instead of chunks: a ResponseAssembler keeps the response of the
// stream's response.completed (or response.incomplete) event, and SynthesizeResponse replays a stored response
// as the typed events, with sequence numbers, that the SDKs' stream helpers rebuild it from (responses.go,
// responses_synth.go).
//
// Round trip: for any body that Assembler.Result returns, assembling the output of Synthesize gives the same
// JSON value back. The tests hold the package to it.
//
// Values pass through as raw JSON: strings keep their escapes, numbers their spelling, usage and logprob
// entries their bytes, except for whitespace between tokens, which every copied value loses (AppendCompact).
// Upstreams indent their answers (OpenAI's API does), and an SSE data line must not hold a line break: a
// replay of an indented answer is the replay of its compact form, byte for byte. The package imports nothing
// else of llmcache and uses no reflection.
package sse

import "strconv"

// Kind selects the wire format.
type Kind uint8

const (
	// Chat is /v1/chat/completions: chunks are "chat.completion.chunk", answers "chat.completion".
	Chat Kind = iota + 1
	// Completion is the legacy /v1/completions: chunks and answers are both "text_completion".
	Completion
)

func (k Kind) String() string {
	switch k {
	case Chat:
		return "chat"
	case Completion:
		return "completion"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}
