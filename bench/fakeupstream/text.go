package fakeupstream

import (
	"bufio"
	"bytes"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json"
)

// Answers drawn from a text (Options.Text) are for measuring what depends on the bytes of an answer, such
// as how well stored answers compress: the default filler repeats a few dozen words, which any compressor
// shrinks to almost nothing. A text answer is consecutive paragraphs of the text, starting at a paragraph
// chosen by a hash of the prompt (the same prompt, the same answer), cut at a word boundary near
// Options.AnswerBytes. For the figures to mean something the text must be much larger than what a
// compressor can learn from it (a zstd dictionary holds ~100 KB): GoDocText gives ~7 MB.

// splitParagraphs splits text at blank lines, joining the lines of each paragraph with spaces.
func splitParagraphs(text []byte) []string {
	var out []string
	for _, p := range bytes.Split(bytes.ReplaceAll(text, []byte("\r\n"), []byte("\n")), []byte("\n\n")) {
		if f := strings.Fields(string(p)); len(f) > 0 {
			out = append(out, strings.Join(f, " "))
		}
	}
	return out
}

// textAnswer is the answer to prompt drawn from s.paragraphs, and its word count.
func (s *Server) textAnswer(prompt string) (string, int) {
	h := uint64(14695981039346656037) // FNV-1a
	for i := 0; i < len(prompt); i++ {
		h ^= uint64(prompt[i])
		h *= 1099511628211
	}
	var sb strings.Builder
	sb.Grow(s.answerBytes + 256)
	for i := int(h % uint64(len(s.paragraphs))); sb.Len() < s.answerBytes; i = (i + 1) % len(s.paragraphs) {
		if sb.Len() > 0 {
			sb.WriteString("\n\n")
		}
		sb.WriteString(s.paragraphs[i])
	}
	t := truncUTF8(sb.String(), s.answerBytes)
	if i := strings.LastIndexByte(t, ' '); i > 0 && len(t) < sb.Len() {
		t = t[:i]
	}
	return t, countWords(t)
}

// appendChatID appends a chat completion's id: "chatcmpl-fake-<seq>", or with openai an id shaped like
// api.openai.com's, "chatcmpl-" and 29 letters and digits, still unique per seq (a bijective mix of it).
func appendChatID(b []byte, seq int64, openai bool) []byte {
	if !openai {
		b = append(b, "chatcmpl-fake-"...)
		return strconv.AppendInt(b, seq, 10)
	}
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b = append(b, "chatcmpl-"...)
	state, x := uint64(seq), uint64(0)
	for i := 0; i < 29; i++ {
		if i%10 == 0 { // splitmix64: a new 64-bit draw every 10 characters
			state += 0x9e3779b97f4a7c15
			x = state
			x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
			x = (x ^ x>>27) * 0x94d049bb133111eb
			x ^= x >> 31
		}
		b = append(b, digits[x%62])
		x /= 62
	}
	return b
}

// GoDocText returns the doc comments of the Go standard library found in the Go installation that runs
// (`go env GOROOT`, else the one this binary was built with): about 7 MB of varied English prose, one
// paragraph per comment paragraph, paragraphs separated by blank lines. It is a corpus for Options.Text
// that needs no download and is present wherever the benchmarks can be built. Lines of code in comments
// (indented) and build directives are left out.
func GoDocText() ([]byte, error) {
	root := runtime.GOROOT()
	if out, err := exec.Command("go", "env", "GOROOT").Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
		root = string(bytes.TrimSpace(out))
	}
	if root == "" {
		return nil, errors.New("cannot find the Go installation (go env GOROOT)")
	}
	var text bytes.Buffer
	err := filepath.WalkDir(filepath.Join(root, "src"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "vendor") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		return appendDocParagraphs(&text, path)
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read the Go standard library's comments: %w", err)
	}
	if text.Len() == 0 {
		return nil, fmt.Errorf("cannot read the Go standard library's comments: none under %s", root)
	}
	return text.Bytes(), nil
}

// appendDocParagraphs appends the prose paragraphs of the // comments of one Go file to text.
func appendDocParagraphs(text *bytes.Buffer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20) // generated tables have very long lines
	var para []string
	flush := func() {
		// Short ones are mostly labels ("Deprecated: ...", "TODO") rather than prose.
		if p := strings.Join(para, " "); len(p) >= 120 && !strings.Contains(p, "Copyright") {
			text.WriteString(p)
			text.WriteString("\n\n")
		}
		para = para[:0]
	}
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		c, ok := strings.CutPrefix(line, "//")
		switch {
		case !ok || strings.HasPrefix(c, "go:") || strings.HasPrefix(c, "\t") || strings.HasPrefix(c, "  "):
			flush() // code, a directive, or code quoted in the comment
		case strings.TrimSpace(c) == "":
			flush()
		default:
			para = append(para, strings.TrimSpace(c))
		}
	}
	flush()
	return sc.Err()
}

// ChatAnswers returns n distinct chat answers drawn from text as a server with Options{Text: text,
// AnswerBytes: answerBytes, Indent: true} answers ChatRequest(0) ... ChatRequest(n-1), without a server:
// bodies for benchmarks of what stores answers. It fails on a text without words.
func ChatAnswers(text []byte, n, answerBytes int) ([][]byte, error) {
	s := &Server{answerBytes: answerBytes, paragraphs: splitParagraphs(text)}
	if len(s.paragraphs) == 0 {
		return nil, errors.New("fakeupstream: the text has no words")
	}
	if s.answerBytes <= 0 {
		s.answerBytes = DefaultAnswerBytes
	}
	created := time.Now().Unix()
	out := make([][]byte, n)
	for i := range out {
		// The prompt the server would answer: the last message of ChatRequest(i).
		var req chatRequest
		if err := json.Unmarshal(ChatRequest(i), &req); err != nil {
			return nil, err
		}
		last, _ := messageText(req.Messages[len(req.Messages)-1].Content)
		ans := chatAnswer{kind: kindText, prompt: 3, openaiID: true}
		for _, m := range req.Messages {
			ans.prompt += countWords(m.Content) + 3
		}
		ans.text, ans.perComp = s.textAnswer(last)
		var b bytes.Buffer
		if err := stdjson.Indent(&b, appendChatResponse(nil, &ans, req.Model, int64(i+1), created+int64(i), 1), "", "  "); err != nil {
			return nil, err
		}
		b.WriteByte('\n')
		out[i] = b.Bytes()
	}
	return out, nil
}
