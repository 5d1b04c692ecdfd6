package fakeupstream

import "strconv"

const (
	chatRequestHead = `{"model":"fake-model","messages":[{"role":"system","content":"You are a helpful assistant for a travel company. ` +
		`Answer briefly and accurately, use metric units, and say so when you are not sure about something."},` +
		`{"role":"user","content":"Question `
	chatRequestTail = `: I am planning a four-day trip to Lisbon in early spring with two children. ` +
		`Which neighbourhoods are good to stay in, what should we not miss, and how do we get around without a car? ` +
		`Please keep it short."}],"temperature":0.7,"max_tokens":512}`
)

// ChatRequest returns a realistic chat completion request body of about 500
// bytes (model "fake-model", a system and a user message, temperature and
// max_tokens) whose user message differs for every i.
func ChatRequest(i int) []byte {
	b := make([]byte, 0, len(chatRequestHead)+len(chatRequestTail)+20)
	b = append(b, chatRequestHead...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, chatRequestTail...)
	return b
}
