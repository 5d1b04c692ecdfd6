package canon

import (
	"strconv"
	"strings"
)

// chatBody500 is a typical small OpenAI chat request (about 500 bytes).
const chatBody500 = `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant for an online bookshop. Answer briefly and politely, in the language of the customer. Never invent prices or stock levels."},{"role":"user","content":"Hi! I ordered \"The Name of the Rose\" last week (order #48213) but it has not arrived yet. Could you tell me where it is and when I can expect it? Merci beaucoup, Andr\u00e9"}],"temperature":0.7,"max_tokens":256,"stream":false}`

// chatBody builds a multi-turn chat request of at least size bytes, with
// the mix of plain text, escapes and non-ASCII that real conversations have.
func chatBody(size int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"model":"gpt-4o","temperature":0.2,"top_p":1.0,"max_tokens":1024,"stream":true,"user":"user-1234","messages":[`)
	sb.WriteString(`{"role":"system","content":"You are a senior Go reviewer. Point out bugs first, then style.\nKeep answers under 200 words."}`)
	for turn := 0; sb.Len() < size-400; turn++ {
		role, text := "user", `Here is the next function, please review it:\n\nfunc parse(s string) (int, error) {\n\tn, err := strconv.Atoi(s)\n\tif err != nil {\n\t\treturn 0, fmt.Errorf(\"parse %q: %w\", s, err)\n\t}\n\treturn n, nil\n}\n`
		if turn%2 == 1 {
			role, text = "assistant", `The function is fine, but consider naming: \u201cparse\u201d says little. Also, wrapping with %w keeps errors.Is working \u2014 good. Caf\u00e9-level nit: the error message repeats the input, which may be long; clip it. Ça marche très bien sinon. 👍`
		}
		sb.WriteString(`,{"role":"` + role + `","content":"` + text + ` (turn ` + strconv.Itoa(turn) + `)"}`)
	}
	sb.WriteString(`]}`)
	return []byte(sb.String())
}
