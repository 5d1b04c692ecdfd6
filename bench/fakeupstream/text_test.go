package fakeupstream

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// TestTextAnswers: with Options.Text, chat answers are paragraphs of the text (the same prompt, the same
// content; another prompt, other content), about AnswerBytes long, indented like OpenAI's, with ids
// shaped like OpenAI's that still differ from answer to answer.
func TestTextAnswers(t *testing.T) {
	var text strings.Builder
	for i := range 200 {
		text.WriteString("Paragraph " + strings.Repeat("x", i%7) + " number " + string(rune('a'+i%26)) +
			" says something about caches, proxies and the weather in a sentence of its own.\n\n")
	}
	s := start(t, Options{Text: []byte(text.String()), AnswerBytes: 800, Indent: true})
	type answer struct {
		ID      string `json:"id"`
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	get := func(prompt string) (answer, string) {
		t.Helper()
		r := post(t, s, "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"`+prompt+`"}]}`)
		var a answer
		if r.status != 200 || json.Unmarshal(r.body, &a) != nil || len(a.Choices) != 1 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		return a, string(r.body)
	}
	a1, raw := get("first question")
	a2, _ := get("first question")
	b, _ := get("another question")
	c := a1.Choices[0].Message.Content
	if c != a2.Choices[0].Message.Content || c == b.Choices[0].Message.Content {
		t.Fatalf("same prompt gave other content, or another prompt the same:\n%q\n%q\n%q", c, a2.Choices[0].Message.Content, b.Choices[0].Message.Content)
	}
	if len(c) < 700 || len(c) > 800 || !strings.Contains(text.String(), strings.SplitN(c, "\n\n", 2)[0]) || strings.Contains(c, "echo:") {
		t.Fatalf("content of %d bytes not drawn from the text: %q", len(c), c)
	}
	if !strings.HasPrefix(raw, "{\n  \"id\": \"chatcmpl-") {
		t.Fatalf("not indented: %s", raw)
	}
	id := regexp.MustCompile(`^chatcmpl-[0-9A-Za-z]{29}$`)
	if !id.MatchString(a1.ID) || !id.MatchString(b.ID) || a1.ID == a2.ID {
		t.Fatalf("ids %q %q %q", a1.ID, a2.ID, b.ID)
	}
}

// TestGoDocText: the corpus from the Go installation is large (a compressor must not be able to learn
// it whole) and prose, not code.
func TestGoDocText(t *testing.T) {
	if testing.Short() {
		t.Skip("reads the Go standard library")
	}
	text, err := GoDocText()
	if err != nil {
		t.Fatal(err)
	}
	paras := splitParagraphs(text)
	if len(text) < 2<<20 || len(paras) < 5000 {
		t.Fatalf("%d bytes in %d paragraphs", len(text), len(paras))
	}
	for _, p := range paras[:100] {
		if strings.Contains(p, "func (") || strings.HasPrefix(p, "go:") {
			t.Fatalf("code in the corpus: %q", p)
		}
	}
}

// TestChatAnswersAsServed: ChatAnswers gives what the server answers to ChatRequest(i), but for the id
// and the created time.
func TestChatAnswersAsServed(t *testing.T) {
	text := []byte(strings.Repeat("One paragraph of prose about caches and answers, long enough to count.\n\nAnother one, on proxies.\n\n", 40))
	got, err := ChatAnswers(text, 3, 700)
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, Options{Text: text, AnswerBytes: 700, Indent: true})
	strip := regexp.MustCompile(`"(id|created)": [^,]*,`)
	for i, g := range got {
		r := post(t, s, "/v1/chat/completions", string(ChatRequest(i)))
		if a, b := strip.ReplaceAllString(string(g), ""), strip.ReplaceAllString(string(r.body), ""); a != b {
			t.Fatalf("answer %d:\n%s\nserved:\n%s", i, a, b)
		}
	}
	if string(got[0]) == string(got[1]) {
		t.Fatal("two answers alike")
	}
}
