package canon

import "testing"

func BenchmarkParseCanonical(b *testing.B) {
	for _, bc := range []struct {
		name string
		body []byte
	}{
		{"size=500B", []byte(chatBody500)},
		{"size=16KiB", chatBody(16 << 10)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var p Parser
			dst := make([]byte, 0, 2*len(bc.body))
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.body)))
			for b.Loop() {
				members, err := p.ParseObject(bc.body)
				if err != nil {
					b.Fatal(err)
				}
				dst = p.AppendCanonicalObject(dst[:0], bc.body, members, nil)
			}
		})
	}
}

// BenchmarkParse and BenchmarkCanonical split the cost between the two halves.
func BenchmarkParse(b *testing.B) {
	body := chatBody(16 << 10)
	var p Parser
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := p.ParseObject(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCanonical(b *testing.B) {
	body := chatBody(16 << 10)
	var p Parser
	members, err := p.ParseObject(body)
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 0, 2*len(body))
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		dst = p.AppendCanonicalObject(dst[:0], body, members, nil)
	}
}

// BenchmarkHostileNesting shows that canonicalization stays linear for an
// object nested 512 deep that is out of order at every level: ns/op should be
// close to that of a flat body of the same size.
func BenchmarkHostileNesting(b *testing.B) {
	body, _ := hostileNesting(maxDepth, 1<<20)
	raw := []byte(body)
	var p Parser
	dst := make([]byte, 0, 2*len(raw))
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		members, err := p.ParseObject(raw)
		if err != nil {
			b.Fatal(err)
		}
		dst = p.AppendCanonicalObject(dst[:0], raw, members, nil)
	}
}
