package bench

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"llmcache/bench/fakeupstream"
)

// embeddingRequest is a 256-input request whose inputs 0..cached-1 are shared by every request and the
// rest are unique to request n.
func embeddingRequest(n, cached int) []byte {
	var b strings.Builder
	b.WriteString(`{"model":"emb","input":[`)
	for i := range 256 {
		if i > 0 {
			b.WriteByte(',')
		}
		if i < cached {
			b.WriteString(`"shared passage ` + strconv.Itoa(i) + `"`)
		} else {
			b.WriteString(`"passage ` + strconv.Itoa(n) + `-` + strconv.Itoa(i) + `"`)
		}
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// BenchmarkEmbeddings sends 256-input requests that are 90% cached through llmcache, next to the same
// requests sent straight to the fake upstream, in one run.
func BenchmarkEmbeddings(b *testing.B) {
	fake := startFake(b, fakeupstream.Options{})
	const cached = 230 // 90% of 256
	var seq atomic.Int64
	next := func() []byte { return embeddingRequest(int(seq.Add(1)), cached) }
	b.Run("path=direct-upstream", func(b *testing.B) {
		measureOn(b, fake.Addr(), embeddingsPath, next, nil)
	})
	b.Run("path=llmcache/cached=90%", func(b *testing.B) {
		p := startProxy(b, fake.URL(), true)
		warmOn(b, p, embeddingsPath, [][]byte{embeddingRequest(0, cached)})
		measureOn(b, p.addr, embeddingsPath, next, nil)
	})
}
