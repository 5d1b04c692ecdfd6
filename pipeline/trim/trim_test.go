package trim

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// jstr quotes s as a JSON string, escaping only what JSON requires, so invalid UTF-8 stays raw.
func jstr(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20:
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func msg(role, content string) string {
	return fmt.Sprintf(`{"role":%s,"content":%s}`, jstr(role), jstr(content))
}

func user(content string) string { return msg("user", content) }

// calls is an assistant message calling one tool per id.
func calls(ids ...string) string {
	var cs []string
	for _, id := range ids {
		cs = append(cs, fmt.Sprintf(`{"id":%s,"type":"function","function":{"name":"lookup","arguments":"{\"q\":\"%s\"}"}}`, jstr(id), id))
	}
	return `{"role":"assistant","content":null,"tool_calls":[` + strings.Join(cs, ",") + `]}`
}

func result(id, content string) string {
	return fmt.Sprintf(`{"role":"tool","tool_call_id":%s,"content":%s}`, jstr(id), jstr(content))
}

// request is a chat request with msgs and extra top-level members.
func request(extra string, msgs ...string) []byte {
	b := `{"model":"gpt-4o","messages":[` + strings.Join(msgs, ",") + `]`
	if extra != "" {
		b += "," + extra
	}
	return []byte(b + "}")
}

// cost counts raw messages as Trim does, without the reply priming.
func cost(tb testing.TB, tok *Tokenizer, msgs ...string) int {
	tb.Helper()
	n := 0
	for _, raw := range msgs {
		var m message
		if err := stdjson.Unmarshal([]byte(raw), &m); err != nil {
			tb.Fatalf("%s: %v", raw, err)
		}
		c, err := tok.countMessage(&m)
		if err != nil {
			tb.Fatalf("%s: %v", raw, err)
		}
		n += c
	}
	return n
}

// keptMessages decodes the messages of a result body with encoding/json.
func keptMessages(tb testing.TB, body []byte) []string {
	tb.Helper()
	var r struct {
		Messages []stdjson.RawMessage `json:"messages"`
	}
	if err := stdjson.Unmarshal(body, &r); err != nil {
		tb.Fatalf("result is not JSON: %v\n%s", err, body)
	}
	out := make([]string, len(r.Messages))
	for i, m := range r.Messages {
		out[i] = string(m)
	}
	return out
}

// The cookbook's example conversation, with the prompt_tokens the API reported for it.
var cookbookMessages = []string{
	`{"role":"system","content":"You are a helpful, pattern-following assistant that translates corporate jargon into plain English."}`,
	`{"role":"system","name":"example_user","content":"New synergies will help drive top-line growth."}`,
	`{"role":"system","name":"example_assistant","content":"Things working well together will increase revenue."}`,
	`{"role":"system","name":"example_user","content":"Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."}`,
	`{"role":"system","name":"example_assistant","content":"Let's talk later when we're less busy about how to do better."}`,
	`{"role":"user","content":"This late pivot means we don't have time to boil the ocean for the client deliverable."}`,
}

// TestCookbookExample: "How to count tokens with tiktoken" (openai-cookbook), §6: 129 prompt tokens
// for gpt-3.5-turbo and gpt-4 (cl100k_base), 124 for gpt-4o and gpt-4o-mini (o200k_base), both from
// num_tokens_from_messages and from the API's usage.prompt_tokens.
func TestCookbookExample(t *testing.T) {
	for name, want := range map[string]int{"cl100k_base": 129, "o200k_base": 124} {
		tok := tokenizer(t, name)
		body := request("", cookbookMessages...)
		res, err := Trim(body, Options{MaxContextTokens: want, Tokenizer: tok})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if res.PromptTokens != want || res.Dropped != 0 || &res.Body[0] != &body[0] {
			t.Errorf("%s: %d prompt tokens, %d dropped, same body %v; want %d, 0, true",
				name, res.PromptTokens, res.Dropped, &res.Body[0] == &body[0], want)
		}
		// One token less and the last message, which must stay, no longer fits with the system
		// messages.
		if _, err := Trim(body, Options{MaxContextTokens: want - 1, Tokenizer: tok}); !errors.Is(err, ErrOverflow) {
			t.Errorf("%s: budget %d gave %v, want ErrOverflow", name, want-1, err)
		}
	}
}

// TestToolDefinitionsErrHigh: the cookbook's §7 example (one weather tool, two messages) costs
// 105 prompt tokens on gpt-4 and 101 on gpt-4o per the API; counting the raw JSON of the
// definitions must not come out lower.
func TestToolDefinitionsErrHigh(t *testing.T) {
	tools := `"tools":[{"type":"function","function":{"name":"get_current_weather","description":"Get the current weather in a given location","parameters":{"type":"object","properties":{"location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"},"unit":{"type":"string","description":"The unit of temperature to return","enum":["celsius","fahrenheit"]}},"required":["location"]}}}]`
	body := request(tools,
		msg("system", "You are a helpful assistant that can answer to questions about the weather."),
		user("What's the weather like in San Francisco?"))
	for name, api := range map[string]int{"cl100k_base": 105, "o200k_base": 101} {
		res, err := Trim(body, Options{MaxContextTokens: 1000, Tokenizer: tokenizer(t, name)})
		if err != nil {
			t.Fatal(err)
		}
		if res.PromptTokens < api {
			t.Errorf("%s: %d tokens counted, the API says %d: the estimate must not be lower", name, res.PromptTokens, api)
		}
	}
}

func TestMessageCount(t *testing.T) {
	tok := tokenizer(t, "o200k_base")
	c := tok.Count
	for _, tc := range []struct {
		raw  string
		want int
	}{
		{user("hello world"), tokensPerMessage + c("user") + 2},
		{`{"role":"user","name":"bob","content":"hi"}`, tokensPerMessage + c("user") + tokensPerName + c("bob") + c("hi")},
		{`{"role":"user","content":[{"type":"text","text":"look at this"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}},{"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}}]}`,
			tokensPerMessage + c("user") + c("look at this") + 2*nonTextPartTokens},
		{calls("a", "b"), tokensPerMessage + c("assistant") + 2*tokensPerCall + 2*c("lookup") + c(`{"q":"a"}`) + c(`{"q":"b"}`)},
		{result("call_1", "sunny"), tokensPerMessage + c("tool") + c("call_1") + c("sunny")},
		{`{"role":"assistant","content":null,"function_call":{"name":"f","arguments":"{}"}}`, tokensPerMessage + c("assistant") + tokensPerCall + c("f") + c("{}")},
		{`{"role":"assistant","content":[{"type":"refusal","refusal":"no"}],"refusal":"no","reasoning_content":"because"}`,
			tokensPerMessage + c("assistant") + 2*c("no") + c("because")},
	} {
		if got := cost(t, tok, tc.raw); got != tc.want {
			t.Errorf("%s: %d tokens, want %d", tc.raw, got, tc.want)
		}
	}
}

// TestRules sets each budget to the exact cost of the messages that should be kept (plus the
// cost of slack messages and slackDelta), so that one token more would change the answer.
func TestRules(t *testing.T) {
	tok := tokenizer(t, "o200k_base")
	long := strings.Repeat("A long message about many things. ", 40)
	huge := strings.Repeat("人工智能 machine learning 🤖 ", 2000)
	pairChat := []string{
		msg("system", "You are terse."),   // 0
		user("first question " + long),    // 1
		calls("call_a", "call_b"),         // 2
		result("call_a", "result a"),      // 3
		result("call_b", "result b"),      // 4
		user("second question"),           // 5
		msg("assistant", "second answer"), // 6
		user("third question"),            // 7
	}
	for _, tc := range []struct {
		name       string
		msgs       []string
		extra      string // top-level members besides model and messages
		reserve    int    // Options.ReserveOutputTokens
		reqReserve int    // the reserve the request's fields imply, when reserve is 0
		keep       []int
		slack      []int // messages whose cost is added to the budget without being kept
		slackDelta int
		overflow   bool
	}{
		{name: "nothing to drop", msgs: pairChat, keep: []int{0, 1, 2, 3, 4, 5, 6, 7}},
		{name: "tool pair dropped whole though its results fit", msgs: pairChat,
			keep: []int{0, 5, 6, 7}, slack: []int{3, 4}},
		{name: "tool pair kept whole", msgs: pairChat,
			keep: []int{0, 2, 3, 4, 5, 6, 7}, slack: []int{1}, slackDelta: -1},
		{name: "system message in the middle stays in place",
			msgs: []string{user("u0 " + long), msg("assistant", "a1"), msg("system", "s2"), user("u3"), msg("assistant", "a4"), user("u5")},
			keep: []int{2, 3, 4, 5}, slack: []int{1}, slackDelta: -1},
		{name: "system message in the middle does not break the history",
			msgs: []string{user("u0 " + long), msg("assistant", "a1"), msg("system", "s2"), user("u3"), msg("developer", "d4"), user("u5")},
			keep: []int{1, 2, 3, 4, 5}, slack: []int{0}, slackDelta: -1},
		{name: "developer message kept however old",
			msgs: []string{msg("developer", "rules"), user("u1 " + long), msg("assistant", "a2"), user("u3")},
			keep: []int{0, 2, 3}, slack: []int{1}, slackDelta: -1},
		{name: "huge last message overflows",
			msgs: []string{msg("system", "s"), user("u1"), user(huge)},
			keep: []int{0, 2}, slackDelta: -1, overflow: true},
		{name: "last message is a tool result: its caller and sibling result are kept",
			msgs: []string{user("u0"), calls("x", "y"), result("x", "rx"), result("y", "ry")},
			keep: []int{1, 2, 3}, slack: []int{0}, slackDelta: -1},
		{name: "last message is a tool result: caller and siblings are mandatory",
			msgs: []string{user("u0"), calls("x", "y"), result("x", "rx "+long), result("y", "ry")},
			keep: []int{1, 2, 3}, slackDelta: -1, overflow: true},
		{name: "one message fits", msgs: []string{user("only")}, keep: []int{0}},
		{name: "one message overflows", msgs: []string{user("only")}, keep: []int{0}, slackDelta: -1, overflow: true},
		{name: "reserve from max_tokens", msgs: pairChat, extra: `"max_tokens":500`, reqReserve: 500,
			keep: []int{0, 5, 6, 7}, slack: []int{4}},
		{name: "reserve from max_completion_tokens before max_tokens", msgs: pairChat,
			extra: `"max_tokens":7,"max_completion_tokens":300`, reqReserve: 300, keep: []int{0, 5, 6, 7}, slack: []int{4}},
		{name: "explicit reserve wins over the request", msgs: pairChat, extra: `"max_tokens":7`, reserve: 1000,
			keep: []int{0, 5, 6, 7}, slack: []int{4}},
		{name: "multi-part content counts text and a flat image",
			msgs: []string{user("u0"), `{"role":"user","content":[{"type":"text","text":"what is in this picture?"},{"type":"image_url","image_url":{"url":"https://example.com/a.png","detail":"low"}}]}`, msg("assistant", "a cat"), user("thanks")},
			keep: []int{1, 2, 3}, slack: []int{0}, slackDelta: -1},
		{name: "orphan tool result is a turn of its own",
			msgs: []string{user("u0"), result("gone", "orphan result"), msg("assistant", "a2"), user("u3")},
			keep: []int{1, 2, 3}, slack: []int{0}, slackDelta: -1},
		{name: "orphan tool result as the last message",
			msgs: []string{user("u0 " + long), calls("x"), result("x", "rx"), result("gone", "orphan")},
			keep: []int{3}, slack: []int{2}},
		{name: "interleaved calls pull the older caller into the tail",
			msgs: []string{user("u0"), calls("p"), calls("q"), result("p", "rp"), result("q", "rq")},
			keep: []int{1, 2, 3, 4}, slack: []int{0}, slackDelta: -1},
		{name: "reserve as large as the window", msgs: []string{user("u")}, reserve: 1 << 20,
			keep: []int{0}, overflow: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var kept, slack []string
			for _, i := range tc.keep {
				kept = append(kept, tc.msgs[i])
			}
			for _, i := range tc.slack {
				slack = append(slack, tc.msgs[i])
			}
			budget := replyPriming + cost(t, tok, kept...) + cost(t, tok, slack...) + tc.slackDelta
			reserve := tc.reserve
			if reserve == 0 {
				reserve = tc.reqReserve
			}
			window := max(budget+reserve, 1)
			if tc.reserve >= 1<<20 {
				window = 1000
			}
			body := request(tc.extra, tc.msgs...)
			res, err := Trim(body, Options{MaxContextTokens: window, ReserveOutputTokens: tc.reserve, Tokenizer: tok})
			if tc.overflow {
				if !errors.Is(err, ErrOverflow) {
					t.Fatalf("got %v, want ErrOverflow", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if prompt := replyPriming + cost(t, tok, kept...); res.Budget != budget || res.PromptTokens != prompt {
				t.Errorf("budget %d, prompt %d; want %d, %d", res.Budget, res.PromptTokens, budget, prompt)
			}
			if got := keptMessages(t, res.Body); !slices.Equal(got, kept) {
				t.Errorf("kept\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(kept, "\n"))
			}
			if res.Dropped != len(tc.msgs)-len(kept) {
				t.Errorf("Dropped %d, want %d", res.Dropped, len(tc.msgs)-len(kept))
			}
			if same := &res.Body[0] == &body[0]; same != (res.Dropped == 0) {
				t.Errorf("input slice returned: %v, with %d dropped", same, res.Dropped)
			}
		})
	}
}

// TestSpliceKeepsOtherBytes: only the messages array changes; every other byte, odd spacing,
// escapes, a nested "messages" and key order included, comes out as it came in.
func TestSpliceKeepsOtherBytes(t *testing.T) {
	tok := tokenizer(t, "o200k_base")
	long := strings.Repeat("old history ", 300)
	msgs := []string{user(long), msg("assistant", "ok"), user("now")}
	prefix := "{ \"model\" : \"gpt-4o\",\n  \"metadata\": {\"messages\": [1, \"]\"]},\t\"note\":\"a \\\"messages\\\": [\" ,\n  \"messages\" :\n [ "
	suffix := " \n] ,\"tools\":null, \"temperature\": 0.25e0 , \"stream\" : true }\n"
	body := []byte(prefix + strings.Join(msgs, " ,\n ") + suffix)
	if !stdjson.Valid(body) {
		t.Fatalf("test body is not JSON: %s", body)
	}
	res, err := Trim(body, Options{MaxContextTokens: 100, Tokenizer: tok})
	if err != nil {
		t.Fatal(err)
	}
	wantPrefix := strings.TrimSuffix(prefix, "[ ")
	wantSuffix := strings.TrimPrefix(suffix, " \n]")
	want := wantPrefix + "[" + msgs[1] + "," + msgs[2] + "]" + wantSuffix
	if string(res.Body) != want || res.Dropped != 1 {
		t.Errorf("got (%d dropped)\n%s\nwant\n%s", res.Dropped, res.Body, want)
	}
	if !bytes.Contains(body, []byte("old history ")) {
		t.Error("Trim changed its input")
	}
}

func TestMalformed(t *testing.T) {
	for _, body := range []string{
		``,
		`[]`,
		`{"model":"x"}`,
		`{"messages":{"role":"user"}}`,
		`{"messages":"hi"}`,
		`{"messages":[{"role":"user","content":"hi"}`,
		`{"messages":[{"role":"user","content":"hi"},]}`,
		`{"messages":[{"role":"user","content":"hi"} {"role":"user"}]}`,
		`{"messages":[1]}`,
		`{"messages":[null]}`,
		`{"messages":[{"role":"user","content":5}]}`,
		`{"messages":[{"role":7,"content":"x"}]}`,
		`{"messages":[{"role":"user","content":"x"}],"max_tokens":"ten"}`,
		`{"messages":[{"role":"user","content":"x"}]`,
		`{"messages":[{"role":"user","content":"x"}] "model":"y"}`,
		`{"messages":[{"role":"user","content":"x\"}]}`,
		`{"a":[}],"messages":[]}`,
	} {
		_, err := Trim([]byte(body), Options{MaxContextTokens: 1000})
		if err == nil || errors.Is(err, ErrOverflow) {
			t.Errorf("%s: got %v, want a non-overflow error", body, err)
		}
	}
	if _, err := Trim(request("", user("x")), Options{}); err == nil {
		t.Error("MaxContextTokens 0 accepted")
	}
	// Escaped keys are still keys, and an empty messages array has nothing to trim.
	res, err := Trim([]byte(`{"messag\u0065s":[],"n":1}`), Options{MaxContextTokens: 10})
	if err != nil || res.PromptTokens != replyPriming {
		t.Errorf("escaped key: %+v, %v", res, err)
	}
}

func TestConcurrentTrim(t *testing.T) {
	tok := tokenizer(t, "o200k_base")
	var msgs []string
	for i := range 40 {
		msgs = append(msgs, user(fmt.Sprintf("question %d %s", i, strings.Repeat("词语 words ", 20))), msg("assistant", "answer"))
	}
	body := request(`"max_tokens":100`, msgs...)
	want, err := Trim(body, Options{MaxContextTokens: 1000, Tokenizer: tok})
	if err != nil || want.Dropped == 0 {
		t.Fatalf("%+v %v", want.Dropped, err)
	}
	done := make(chan error)
	for range 4 {
		go func() {
			for range 10 {
				res, err := Trim(body, Options{MaxContextTokens: 1000, Tokenizer: tok})
				if err == nil && !bytes.Equal(res.Body, want.Body) {
					err = errors.New("different result under concurrency")
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// TestMemoKeepsResults: a chat trimmed again (its messages' counts now remembered), or trimmed after a
// chat sharing some of its messages, gives exactly what it gave the first time.
func TestMemoKeepsResults(t *testing.T) {
	tok := tokenizer(t, "o200k_base")
	history := []string{msg("system", "Be brief.")}
	for i := range 40 {
		history = append(history, user(fmt.Sprintf("question %d: %s", i, strings.Repeat("多语言 text 🧪 ", 30))), msg("assistant", "an answer"))
	}
	opt := Options{MaxContextTokens: 2000, Tokenizer: tok}
	a := request("", append(history, user("first new question"))...)
	first, err := Trim(a, opt)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Trim(a, opt)
	if err != nil || again.Dropped != first.Dropped || again.PromptTokens != first.PromptTokens || !bytes.Equal(again.Body, first.Body) {
		t.Fatalf("trimmed again: %+v, err %v; first time dropped %d, %d tokens", again.Dropped, err, first.Dropped, first.PromptTokens)
	}
	b := request("", append(history, user("a different last question, somewhat longer than the first"))...)
	fresh := &Tokenizer{}
	*fresh = *tok
	fresh.memo = newMemo() // the same vocabulary, nothing remembered
	want, err := Trim(b, Options{MaxContextTokens: 2000, Tokenizer: fresh})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Trim(b, opt)
	if err != nil || got.Dropped != want.Dropped || got.PromptTokens != want.PromptTokens || !bytes.Equal(got.Body, want.Body) {
		t.Errorf("a chat sharing remembered messages: dropped %d, %d tokens; counted afresh: dropped %d, %d tokens", got.Dropped, got.PromptTokens, want.Dropped, want.PromptTokens)
	}
}
