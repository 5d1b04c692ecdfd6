package fakeupstream

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
)

// max_tokens bounds the generated pseudo tokens (finish_reason "length" when it cut them), with echo the
// prompt comes first, and every prompt of an array gets its n choices in prompt order: the request shapes of
// lm-evaluation-harness (loglikelihood with max_tokens 0 or 1, generation with max_tokens N).
func TestCompletionsMaxTokensAndEcho(t *testing.T) {
	s := start(t, Options{})
	whole := decodeCompletion(t, post(t, s, "/v1/completions", `{"model":"m","prompt":"one two"}`))
	if whole.Choices[0].FinishReason != "stop" || whole.Usage.CompletionTokens < 100 {
		t.Fatalf("no max_tokens: %+v", whole)
	}

	c := decodeCompletion(t, post(t, s, "/v1/completions", `{"model":"m","prompt":"one two","max_tokens":3}`))
	if c.Choices[0].Text != "echo: one two" || c.Choices[0].FinishReason != "length" || c.Usage.CompletionTokens != 3 {
		t.Fatalf("max_tokens 3: %+v", c)
	}
	c = decodeCompletion(t, post(t, s, "/v1/completions", `{"model":"m","prompt":"one two","max_tokens":1000}`))
	if c.Choices[0].Text != whole.Choices[0].Text || c.Choices[0].FinishReason != "stop" {
		t.Fatalf("max_tokens above the answer: %+v", c)
	}

	// Loglikelihood, today's lm-evaluation-harness: echo, max_tokens 1, logprobs 1, token-id prompts.
	c = decodeCompletion(t, post(t, s, "/v1/completions",
		`{"model":"m","prompt":[[11,12,13],[21,22]],"temperature":0,"max_tokens":1,"logprobs":1,"seed":1234,"echo":true}`))
	if len(c.Choices) != 2 || c.Usage.PromptTokens != 5 || c.Usage.CompletionTokens != 2 {
		t.Fatalf("loglikelihood: %+v", c)
	}
	for i, want := range []string{"11 12 13 echo:", "21 22 echo:"} {
		ch := c.Choices[i]
		if ch.Index != i || ch.Text != want || ch.FinishReason != "length" || ch.Logprobs == nil {
			t.Fatalf("choice %d: %+v", i, ch)
		}
		// One logprob per prompt token and one for the generated token: lm-evaluation-harness reads
		// token_logprobs[ctxlen:-1].
		if n := len(strings.Fields(want)); len(ch.Logprobs.TokenLogprobs) != n || len(ch.Logprobs.TopLogprobs) != n {
			t.Fatalf("choice %d: %d logprobs, want %d", i, len(ch.Logprobs.TokenLogprobs), n)
		}
	}

	// The older shape: max_tokens 0 echoes the prompt alone, with its logprobs.
	c = decodeCompletion(t, post(t, s, "/v1/completions",
		`{"model":"m","prompt":["a b","c"],"echo":true,"max_tokens":0,"temperature":0.0,"logprobs":1,"seed":1234}`))
	if len(c.Choices) != 2 || c.Choices[0].Text != "a b" || c.Choices[1].Text != "c" || c.Usage.CompletionTokens != 0 ||
		len(c.Choices[0].Logprobs.Tokens) != 2 || c.Choices[0].Logprobs.TokenLogprobs[0] != nil {
		t.Fatalf("max_tokens 0: %+v", c)
	}

	// Generation with n: prompt-major indexes.
	c = decodeCompletion(t, post(t, s, "/v1/completions", `{"model":"m","prompt":["x","y","z"],"n":2,"max_tokens":2,"stop":["\n"],"seed":1234}`))
	if len(c.Choices) != 6 {
		t.Fatalf("n 2: %+v", c)
	}
	for i, ch := range c.Choices {
		want := "echo: " + []string{"x", "y", "z"}[i/2]
		if ch.Index != i || ch.Text != want {
			t.Errorf("choice %d: index %d text %q, want %q", i, ch.Index, ch.Text, want)
		}
	}

	r := post(t, s, "/v1/completions", `{"model":"m","prompt":"x","max_tokens":-1}`)
	checkOpenAIError(t, r, 400)
}

// The routes a caching proxy passes through: moderations (JSON), transcriptions (multipart in) and speech
// (binary out), counted under their own names.
func TestOtherRoutes(t *testing.T) {
	s := start(t, Options{})
	r := post(t, s, "/v1/moderations", `{"model":"omni-moderation-latest","input":["fine","FLAG this"]}`)
	if r.status != 200 || !bytes.Contains(r.body, []byte(`"results":[{"flagged":false,`)) || !bytes.Contains(r.body, []byte(`{"flagged":true,`)) {
		t.Fatalf("moderations: %d %s", r.status, r.body)
	}

	audio := []byte("RIFF\x00\x01\xff\r\n binary")
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "hello.wav")
	fw.Write(audio)
	mw.WriteField("model", "whisper-1")
	mw.WriteField("response_format", "text")
	mw.Close()
	req, _ := http.NewRequest("POST", s.URL()+"/v1/audio/transcriptions", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	got.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || got.String() != Transcript("hello.wav", audio)+"\n" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("transcription: %d %q", resp.StatusCode, got.String())
	}
	r = post(t, s, "/v1/audio/transcriptions", `{"model":"whisper-1"}`)
	checkOpenAIError(t, r, 400)

	r = post(t, s, "/v1/audio/speech", `{"model":"tts-1","input":"hello","voice":"alloy"}`)
	if r.status != 200 || r.header.Get("Content-Type") != "audio/mpeg" || !bytes.Equal(r.body, SpeechAudio("hello")) ||
		!bytes.ContainsAny(r.body, "\r\n\x00") {
		t.Fatalf("speech: %d %s, %d bytes", r.status, r.header.Get("Content-Type"), len(r.body))
	}
	if s.CallsTo(RouteModerations) != 1 || s.CallsTo(RouteAudio) != 3 {
		t.Fatalf("calls: moderations %d, audio %d", s.CallsTo(RouteModerations), s.CallsTo(RouteAudio))
	}
}
