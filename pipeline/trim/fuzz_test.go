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

// fuzzText are the pieces conversation contents are made of: scripts, emoji sequences, code,
// white space and invalid UTF-8.
var fuzzText = []string{
	"hello world", " The quick brown fox", "I'm sure they'll", "你好，世界！", "人工智能正在改变世界",
	"こんにちは", "안녕하세요", "👨‍👩‍👧‍👦", "🇯🇵🇺🇸", "❤️‍🔥", "😀", "\xff\xfe", "\xe2\x82", "\n\n", "\t  ",
	"func main() { fmt.Println(\"x\") }", "{\"a\": [1, 2]}", "=====", "<|endoftext|>", "e\u0301",
}

// fuzzBytes hands out the fuzz input a byte at a time, then zeros.
type fuzzBytes []byte

func (b *fuzzBytes) next() int {
	if len(*b) == 0 {
		return 0
	}
	c := (*b)[0]
	*b = (*b)[1:]
	return int(c)
}

func (b *fuzzBytes) text() string {
	var s strings.Builder
	for n := b.next() % 6; n >= 0; n-- {
		s.WriteString(strings.Repeat(fuzzText[b.next()%len(fuzzText)], 1+b.next()%8))
	}
	return s.String()
}

// fuzzChat builds a conversation from the fuzz input: roles, tool calls answered, unanswered or
// answered out of order, orphan results, and contents of any size.
func fuzzChat(b *fuzzBytes) []string {
	var msgs, ids []string
	for i := range 1 + b.next()%14 {
		switch b.next() % 7 {
		case 0:
			msgs = append(msgs, msg("system", b.text()))
		case 1:
			msgs = append(msgs, msg("developer", b.text()))
		case 2, 3:
			msgs = append(msgs, user(b.text()))
		case 4:
			msgs = append(msgs, msg("assistant", b.text()))
		case 5:
			var call []string
			for k := range 1 + b.next()%3 {
				id := fmt.Sprintf("c%d_%d", i, k)
				if b.next()%8 == 0 && len(ids) > 0 {
					id = ids[b.next()%len(ids)] // an id reused by a later call
				}
				call = append(call, id)
				ids = append(ids, id)
			}
			msgs = append(msgs, calls(call...))
			for _, id := range call { // most calls are answered right away
				if b.next()%4 != 0 {
					msgs = append(msgs, result(id, b.text()))
				}
			}
		case 6:
			id := "orphan"
			if k := b.next() % (len(ids) + 1); k < len(ids) {
				id = ids[k]
			}
			msgs = append(msgs, result(id, b.text()))
		}
	}
	return msgs
}

func FuzzTrim(f *testing.F) {
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{3, 2, 5, 6}, 30))
	f.Add(bytes.Repeat([]byte{7, 1, 4, 2, 9, 0, 5, 5, 6}, 20))
	// Found by go test -fuzz=FuzzTrim: two chats of answered and orphan calls with 5 of 12
	// messages dropped, an overflow with 10 tool messages, and a 16-message overflow.
	f.Add([]byte("12Xz1x%A&C1,2A0A%001,210Y2011019x%A&C1,210A%071,210Y2111019x% $ $ %11y$z11AA&C1,210A%B72Xz1x%A&C1,2*\x0001"))
	f.Add([]byte("12Xz1x%A&C1,2A0A%001,210Y201101991bC1$,210A%071,210Y2111019x% $ $ %11y$z11AA&C1,210A%B72Xz1x%A&C1,2*"))
	f.Add([]byte("12Xz1x%A&C1,2A0A%001,210Y2011019x%A&C1,210A%071,210Y21111210A%B71Xb1x%A&11,210A%011,210Y211119x%A&C1,210A%"))
	f.Add([]byte("7Y10110x&10zC12y0zCC00"))
	tok := tokenizer(f, "o200k_base")
	f.Fuzz(func(t *testing.T, data []byte) {
		b := fuzzBytes(data)
		msgs := fuzzChat(&b)
		costs := make([]int, len(msgs))
		total := replyPriming
		for i, m := range msgs {
			costs[i] = cost(t, tok, m)
			total += costs[i]
		}
		window := 1 + (b.next()<<8|b.next())%(total+total/4+10)
		extra, reserve, budget := "", 0, window
		switch r := b.next() % 40; b.next() % 4 {
		case 1:
			reserve, budget = r, window-r
		case 2:
			extra, budget = fmt.Sprintf(`"max_tokens":%d`, r), window-min(r, window)
		case 3:
			extra = fmt.Sprintf(`"max_completion_tokens":%d,"max_tokens":3`, r)
			if r == 0 {
				r = 3 // max_completion_tokens 0 counts as unset: max_tokens applies
			}
			budget = window - min(r, window)
		}
		body := request(extra, msgs...)
		res, err := Trim(body, Options{MaxContextTokens: window, ReserveOutputTokens: reserve, Tokenizer: tok})
		checkTrim(t, msgs, costs, body, budget, res, err)
	})
}

// checkTrim checks a Trim result against the rules, computed here independently of trim.go.
func checkTrim(t *testing.T, msgs []string, costs []int, body []byte, budget int, res Result, err error) {
	t.Helper()
	n := len(msgs)
	var ms []message
	for _, raw := range msgs {
		var m message
		if err := stdjson.Unmarshal([]byte(raw), &m); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	// A turn is an assistant message with tool calls and the later results naming one of its ids
	// (when no nearer caller issued the same id), or a single message.
	caller := make([]int, n)
	for i, m := range ms {
		caller[i] = -1
		if m.Role != "tool" {
			continue
		}
		for j := i - 1; j >= 0 && caller[i] < 0; j-- {
			if ms[j].Role == "assistant" && slices.ContainsFunc(ms[j].ToolCalls, func(c toolCall) bool { return c.ID == m.ToolCallID }) {
				caller[i] = j
			}
		}
	}
	pinned := func(i int) bool { return ms[i].Role == "system" || ms[i].Role == "developer" }
	// boundary: the history may start at p without splitting a call from a result.
	boundary := func(p int) bool {
		for i, j := range caller {
			if j >= 0 && j < p && p <= i {
				return false
			}
		}
		return true
	}
	tail := n
	if !pinned(n - 1) {
		tail = n - 1
		if caller[n-1] >= 0 {
			tail = caller[n-1]
		}
		for !boundary(tail) {
			tail--
		}
	}
	keptCost := func(p int) int { // the prompt when the history starts at p
		c := replyPriming
		for i := range n {
			if pinned(i) || i >= p {
				c += costs[i]
			}
		}
		return c
	}
	if overflow := keptCost(tail) > budget; overflow != errors.Is(err, ErrOverflow) {
		t.Fatalf("mandatory part %d, budget %d: error %v", keptCost(tail), budget, err)
	}
	if err != nil {
		if !errors.Is(err, ErrOverflow) {
			t.Fatalf("non-overflow error: %v", err)
		}
		return
	}
	if res.Budget != budget {
		t.Fatalf("budget %d, want %d", res.Budget, budget)
	}
	// Costs only grow as the history starts earlier, so taking turns newest first until one does
	// not fit ends at the lowest boundary that fits.
	cut := tail
	for p := tail - 1; p >= 0 && keptCost(p) <= budget; p-- {
		if boundary(p) {
			cut = p
		}
	}
	var want []string
	for i := range n {
		if pinned(i) || i >= cut {
			want = append(want, msgs[i])
		}
	}
	got := keptMessages(t, res.Body)
	if !slices.Equal(got, want) {
		t.Fatalf("budget %d: kept\n%s\nwant\n%s", budget, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if res.PromptTokens != keptCost(cut) || res.PromptTokens > budget || res.Dropped != n-len(want) {
		t.Fatalf("prompt %d (want %d, budget %d), dropped %d (want %d)", res.PromptTokens, keptCost(cut), budget, res.Dropped, n-len(want))
	}
	// Everything outside the messages array is unchanged, and the input is returned as it is
	// when nothing is dropped.
	head := bytes.Index(body, []byte(`"messages":[`)) + len(`"messages":[`)
	rest := body[bytes.LastIndex(body, []byte("]")):]
	if !bytes.HasPrefix(res.Body, body[:head]) || !bytes.HasSuffix(res.Body, rest) {
		t.Fatalf("bytes outside messages changed:\n%s\n%s", body, res.Body)
	}
	if (res.Dropped == 0) != (&res.Body[0] == &body[0]) {
		t.Fatalf("%d dropped, input slice returned: %v", res.Dropped, &res.Body[0] == &body[0])
	}
}

// TestOverflowMatchesMandatory checks the other half of FuzzTrim's property: an error is
// ErrOverflow exactly when the mandatory part exceeds the budget.
func TestOverflowMatchesMandatory(t *testing.T) {
	tok := tokenizer(t, "o200k_base")
	msgs := []string{msg("system", "s"), user("u1 " + strings.Repeat("x y ", 100)), calls("a"), result("a", "r")}
	mandatory := replyPriming + cost(t, tok, msgs[0], msgs[2], msgs[3])
	for window := mandatory - 2; window <= mandatory+2; window++ {
		res, err := Trim(request("", msgs...), Options{MaxContextTokens: window, Tokenizer: tok})
		if overflow := errors.Is(err, ErrOverflow); overflow != (window < mandatory) {
			t.Errorf("window %d, mandatory %d: %+v %v", window, mandatory, res.Dropped, err)
		}
	}
}
