package sse

import "bytes"

// IsUsageChunk reports whether event is the usage-only chunk of a chat or completions stream: a data line
// whose JSON has an empty choices array and a usage object. (Placeholder until the full version lands.)
func IsUsageChunk(event []byte) bool {
	data, _, ok := Data(event)
	if !ok {
		return false
	}
	return bytes.Contains(data, []byte(`"usage":{`)) && (bytes.Contains(data, []byte(`"choices":[]`)) || bytes.Contains(data, []byte(`"choices": []`)))
}
