package trim

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"github.com/pkoukk/tiktoken-go-loader/assets"
)

// noNetwork fails and counts every HTTP request made through http.DefaultTransport, which is what
// tiktoken-go's default loader would use to download a vocabulary.
type noNetwork struct{ calls atomic.Int64 }

func (n *noNetwork) RoundTrip(*http.Request) (*http.Response, error) {
	n.calls.Add(1)
	return nil, errors.New("no network in tests")
}

var network = &noNetwork{}

func TestMain(m *testing.M) {
	http.DefaultTransport = network // before any test runs: it is an unsynchronized package variable
	os.Exit(m.Run())
}

var encodingNames = []string{"o200k_base", "cl100k_base"}

func tokenizer(tb testing.TB, name string) *Tokenizer {
	tb.Helper()
	tok, err := NewTokenizer(name)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// TestVocabularyOffline: the vocabularies come from the binary, not the network, and they are
// OpenAI's: the SHA-256 digests are the expected_hash values of tiktoken's openai_public.py.
func TestVocabularyOffline(t *testing.T) {
	for name, want := range map[string]struct {
		sha256 string
		ranks  int
	}{
		"o200k_base":  {"446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d", 199_998},
		"cl100k_base": {"223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7", 100_256},
	} {
		file, err := assets.Assets.ReadFile(name + ".tiktoken")
		if err != nil {
			t.Fatal(err)
		}
		if sum := fmt.Sprintf("%x", sha256.Sum256(file)); sum != want.sha256 {
			t.Errorf("embedded %s has SHA-256 %s, want %s", name, sum, want.sha256)
		}
		if tok := tokenizer(t, name); len(tok.ranks) != want.ranks {
			t.Errorf("%s has %d tokens, want %d", name, len(tok.ranks), want.ranks)
		}
	}
	if n := network.calls.Load(); n != 0 {
		t.Fatalf("%d HTTP requests while loading vocabularies, want 0", n)
	}
	if _, err := NewTokenizer("p50k_base"); err == nil {
		t.Fatal("NewTokenizer(p50k_base) succeeded, want an error")
	}
	a, b := tokenizer(t, ""), tokenizer(t, "o200k_base")
	if a != b || a.Name() != "o200k_base" {
		t.Fatalf("default tokenizer %p %q, want the shared o200k_base %p", a, a.Name(), b)
	}
}

// TestKnownCounts checks counts published by others, never figures taken from this code.
func TestKnownCounts(t *testing.T) {
	for _, c := range []struct {
		text          string
		o200k, cl100k int
		source        string
	}{
		{"hello world", 2, 2, "tiktoken README (encode(\"hello world\"))"},
		{"tiktoken is great!", 6, 6, "OpenAI cookbook, How to count tokens with tiktoken, §3 (o200k: [83 8251 2488 382 2212 0]); cl100k: §0 (t|ik|token| is| great|!)"},
		{"antidisestablishmentarianism", 6, 6, "cookbook §5 compare_encodings"},
		{"2 + 2 = 4", 7, 7, "cookbook §5 compare_encodings"},
		{"お誕生日おめでとう", 8, 9, "cookbook §5 compare_encodings"},
		{"hallo world!", 4, 4, "tiktoken-go doc/test_result.md, python tiktoken column"},
		{"你好世界！", 3, 6, "tiktoken-go doc/test_result.md, python tiktoken column"},
		{"こんにちは世界！", 3, 5, "tiktoken-go doc/test_result.md, python tiktoken column"},
		{"안녕하세요 세계!", 4, 10, "tiktoken-go doc/test_result.md, python tiktoken column"},
		{"Привет мир!", 4, 6, "tiktoken-go doc/test_result.md, python tiktoken column"},
		{"Hej världen!", 3, 7, "tiktoken-go doc/test_result.md, python tiktoken column"},
		{"hello world!你好，世界！", -1, 10, "tiktoken-go tiktoken_test.go, ids converted from python tiktoken"},
	} {
		for _, name := range encodingNames {
			want := c.o200k
			if name == "cl100k_base" {
				want = c.cl100k
			}
			if want < 0 {
				continue
			}
			if got := tokenizer(t, name).Count(c.text); got != want {
				t.Errorf("%s Count(%q) = %d, want %d (%s)", name, c.text, got, want, c.source)
			}
		}
	}
}

// TestAgreesWithReference covers what has no published count (emoji sequences, code, invalid
// UTF-8, long pieces) by comparing with the reference transcription of tiktoken, and checks the
// properties any byte-level BPE has: the tokens are vocabulary entries that decode back to the text.
func TestAgreesWithReference(t *testing.T) {
	texts := []string{
		"The quick brown fox jumps over the lazy dog.",
		"I'm sure they'll say you've DONE IT'S fine, we'd've",
		"我们今天去公园散步，天气非常好。人工智能正在改变世界。",
		"東京都は日本の首都です。ひらがなとカタカナ、漢字。",
		"👍 😀😃 👨‍👩‍👧‍👦 👩🏽‍💻 🏳️‍🌈 🇯🇵🇺🇸🇩🇪 ❤️‍🔥",
		"func main() {\n\tfor i := 0; i < 10; i++ {\n\t\tfmt.Println(\"x\", i) // comment\n\t}\n}\n",
		"def f(x):\n    return {'a': [1, 2, 3], \"b\": x ** 2}  # 12345678\n\n\n",
		"path/to/file.go:12:3 https://example.com/a/b?c=d&e=f",
		"   leading and trailing   \n\n  \r\n\t ",
		"<|endoftext|> is ordinary text here <|endofprompt|>",
		"e\u0301 n\u0303 ǅungla ǈ Ǉ ᾈ ſ 'ſ K 'K İ 'S 'LL 'Re",
		"١٢٣ ४५६ 一二三 Ⅻ ½ ³ 1234567\u3000\u00a0x\u2028",
		"\xff\xfe invalid \xc3( utf-8 \xe2\x82 end\x80",
		strings.Repeat("a", 300) + " " + strings.Repeat("😀", 80) + " " + strings.Repeat("中文", 150),
		strings.Repeat("=", 257) + strings.Repeat(" ", 100) + "x",
	}
	for _, name := range encodingNames {
		tok := tokenizer(t, name)
		for _, text := range texts {
			tokens := refEncode(tok, text)
			got := tok.Count(text)
			if got != len(tokens) {
				t.Errorf("%s Count(%q) = %d, reference gives %d", name, text, got, len(tokens))
			}
			if got < 1 || got > len(text) {
				t.Errorf("%s Count(%q) = %d, want 1..%d (at most one token per byte)", name, text, got, len(text))
			}
			for _, token := range tokens {
				if _, ok := tok.ranks[token]; !ok {
					t.Errorf("%s: %q is not a token", name, token)
				}
			}
			if utf8.ValidString(text) && strings.Join(tokens, "") != text {
				t.Errorf("%s: tokens of %q decode to %q", name, text, strings.Join(tokens, ""))
			}
		}
		// CJK: never more than one token per byte (3 per character), and BPE merges common
		// characters, so well under that.
		cjk := texts[2]
		runes := utf8.RuneCountInString(cjk)
		if n := tok.Count(cjk); n < runes/4 || n > 2*runes {
			t.Errorf("%s: %d tokens for %d CJK characters, want %d..%d", name, n, runes, runes/4, 2*runes)
		}
	}
}

func TestCountEmptyAndConcurrent(t *testing.T) {
	tok := tokenizer(t, "o200k_base")
	if n := tok.Count(""); n != 0 {
		t.Fatalf("Count(\"\") = %d", n)
	}
	text := strings.Repeat("Concurrent counting 并发计数 🚀 ", 50)
	want := tok.Count(text)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if got := tok.Count(text); got != want {
					t.Errorf("concurrent Count = %d, want %d", got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// FuzzCount compares Count with the reference on arbitrary text, including invalid UTF-8 and
// pieces long enough for the heap merge.
func FuzzCount(f *testing.F) {
	for _, s := range []string{"hello world", "I'M 'S'LL", "中文字符😀 \n\n x", "\xff\xfe", "  \r\n  a", "ǅA\u0301b'Ll"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if len(text) > 2048 {
			return // the reference merge is quadratic with a string allocation per step
		}
		for _, name := range encodingNames {
			tok := tokenizer(t, name)
			if got, want := tok.Count(text), len(refEncode(tok, text)); got != want {
				t.Fatalf("%s Count(%q) = %d, reference gives %d", name, text, got, want)
			}
		}
	})
}
