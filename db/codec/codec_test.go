package codec

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

var words = strings.Fields(`the a cache answer proxy request model token stream store body key value entry
writer reader dictionary compress frame disk memory page index batch commit query table row column
because while when after before never always often quickly slowly carefully returns keeps holds sends
reads writes checks counts serves misses hits fails retries waits stops starts opens closes`)

// answers makes n distinct JSON answers of varied words, about size bytes each, as a store would hold.
func answers(seed int64, n, size int) [][]byte {
	r := rand.New(rand.NewSource(seed))
	out := make([][]byte, n)
	for i := range out {
		var sb strings.Builder
		for sb.Len() < size-200 {
			sb.WriteString(words[r.Intn(len(words))])
			if r.Intn(12) == 0 {
				sb.WriteString(". ")
			} else {
				sb.WriteByte(' ')
			}
		}
		out[i] = fmt.Appendf(nil, "{\n  \"id\": \"chatcmpl-%x\",\n  \"object\": \"chat.completion\",\n  \"created\": %d,\n  \"choices\": [\n    {\n      \"index\": 0,\n      \"message\": {\n        \"role\": \"assistant\",\n        \"content\": %q\n      },\n      \"finish_reason\": \"stop\"\n    }\n  ]\n}\n",
			r.Int63(), 1790000000+i, sb.String())
	}
	return out
}

func trained(t testing.TB, id uint32, seed int64, against *Codec) Trained {
	t.Helper()
	d, err := Train(id, answers(seed, 300, 1300), 16<<10, 0, against)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRoundTripAndRetrain(t *testing.T) {
	c := New(Options{})
	body := answers(99, 1, 1300)[0]
	if enc, out := c.Encode(nil, body); enc != Identity || len(out) != 0 {
		t.Fatalf("no dictionary yet: encoding %d", enc)
	}
	d1 := trained(t, 1, 1, c)
	if d1.DictBytes >= d1.RawBytes/2 || d1.CurrentBytes != d1.RawBytes {
		t.Fatalf("held-out samples: %d -> %d bytes (current %d)", d1.RawBytes, d1.DictBytes, d1.CurrentBytes)
	}
	if err := c.Add(d1.Dict, true); err != nil {
		t.Fatal(err)
	}
	enc1, f1 := c.Encode(nil, body)
	if enc1 != 1 || len(f1) >= len(body)/2 {
		t.Fatalf("encoding %d, %d -> %d bytes", enc1, len(body), len(f1))
	}
	f1 = bytes.Clone(f1)
	// A retrain: bodies of dictionary 1 stay readable, new ones use dictionary 2.
	if err := c.Add(trained(t, 2, 2, c).Dict, true); err != nil {
		t.Fatal(err)
	}
	enc2, f2 := c.Encode(nil, body)
	if enc2 != 2 || c.Current() != 2 || c.Len() != 2 {
		t.Fatalf("after a retrain: encoding %d, current %d, %d dictionaries", enc2, c.Current(), c.Len())
	}
	for _, f := range []struct {
		enc   uint32
		frame []byte
	}{{1, f1}, {2, f2}, {Identity, body}} {
		got, err := c.Decode(f.enc, f.frame, nil)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("encoding %d: %v, equal %v", f.enc, err, bytes.Equal(got, body))
		}
	}
	// Another codec (a restart) that knows both reads both.
	c2 := New(Options{})
	c2.Add(Dict{ID: 2, Data: c.state.Load().dicts[2]}, true)
	c2.Add(Dict{ID: 1, Data: c.state.Load().dicts[1]}, false)
	if got, err := c2.Decode(1, f1, nil); err != nil || !bytes.Equal(got, body) || c2.Current() != 2 {
		t.Fatalf("after a restart: %v, current %d", err, c2.Current())
	}
	if err := c2.Add(Dict{ID: 1, Data: []byte("other")}, false); err == nil {
		t.Fatal("a second dictionary under id 1 was accepted")
	}
}

func TestSmallAndLargeBodiesStayIdentity(t *testing.T) {
	c := New(Options{MinBytes: 64, MaxBytes: 4096})
	c.Add(trained(t, 1, 1, nil).Dict, true)
	for _, n := range []int{0, 10, 63, 4097} {
		if enc, _ := c.Encode(nil, bytes.Repeat([]byte("a"), n)); enc != Identity {
			t.Errorf("%d bytes: encoding %d", n, enc)
		}
	}
	random := make([]byte, 1000)
	rand.New(rand.NewSource(1)).Read(random)
	if enc, _ := c.Encode(nil, random); enc != Identity {
		t.Errorf("incompressible body: encoding %d", enc)
	}
}

// TestCorruptIsAnErrorNeverWrongBytes: any change to a frame, or a frame read under another dictionary's
// id, is an error; Decode never returns other bytes than the body encoded.
func TestCorruptIsAnErrorNeverWrongBytes(t *testing.T) {
	c := New(Options{})
	c.Add(trained(t, 1, 1, nil).Dict, false)
	c.Add(trained(t, 2, 2, nil).Dict, true)
	body := answers(7, 1, 1300)[0]
	enc, frame := c.Encode(nil, body)
	if enc != 2 {
		t.Fatalf("encoding %d", enc)
	}
	for i := range frame {
		for _, flip := range []byte{0x01, 0x80, 0xff} {
			bad := bytes.Clone(frame)
			bad[i] ^= flip
			got, err := c.Decode(enc, bad, nil)
			if err == nil {
				if !bytes.Equal(got, body) {
					t.Fatalf("byte %d ^ %#x: wrong bytes without an error", i, flip)
				}
				continue // a bit that changes nothing read (e.g. an unused header bit)
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("byte %d ^ %#x: %v, want ErrCorrupt", i, flip, err)
			}
		}
	}
	for _, bad := range [][]byte{nil, frame[:len(frame)/2], frame[:len(frame)-1], append(bytes.Clone(frame), 0)} {
		if got, err := c.Decode(enc, bad, nil); err == nil && !bytes.Equal(got, body) {
			t.Fatalf("%d bytes of a %d-byte frame: wrong bytes without an error", len(bad), len(frame))
		}
	}
	if _, err := c.Decode(1, frame, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("frame of dictionary 2 read as 1: %v", err)
	}
	if _, err := c.Decode(3, frame, nil); !errors.Is(err, ErrUnknownDict) {
		t.Fatalf("unknown dictionary: %v", err)
	}
}

func TestTrainRefusesTooFewSamples(t *testing.T) {
	if _, err := Train(1, answers(1, 5, 1000), 0, 0, nil); err == nil {
		t.Fatal("5 samples trained a dictionary")
	}
	if _, err := Train(0, answers(1, 100, 1000), 0, 0, nil); err == nil {
		t.Fatal("id 0 accepted")
	}
}

func BenchmarkCodec(b *testing.B) {
	body := answers(5, 1, 1300)[0]
	d := trained(b, 1, 1, nil).Dict
	for _, level := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression} {
		c := New(Options{Level: level})
		c.Add(d, true)
		var frame, out []byte
		var enc uint32
		b.Run(fmt.Sprintf("level=%s/op=encode", level), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				enc, frame = c.Encode(frame, body)
			}
			b.ReportMetric(float64(len(frame))/float64(len(body)), "ratio")
		})
		b.Run(fmt.Sprintf("level=%s/op=decode", level), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				out, _ = c.Decode(enc, frame, out)
			}
		})
	}
}

// TestLargestBodyRoundTrips: a body of MaxBytes, whose matches span all of it, comes back byte for byte, and
// the encoders' window (sized to MaxBytes, not zstd's default) still lets them reach: it compresses well.
func TestLargestBodyRoundTrips(t *testing.T) {
	c := New(Options{})
	if err := c.Add(trained(t, 1, 1, nil).Dict, true); err != nil {
		t.Fatal(err)
	}
	block := answers(7, 1, 300<<10)[0]
	body := bytes.Repeat(block, 4)[:1<<20] // repeats 300 KB apart: only a window of the whole body finds them
	enc, frame := c.Encode(nil, body)
	if enc != 1 || len(frame) > len(block)/2 {
		t.Fatalf("a 1 MiB body: encoding %d, %d bytes compressed", enc, len(frame))
	}
	got, err := c.Decode(enc, frame, nil)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("a 1 MiB body did not come back: %v", err)
	}
}

// TestTrainAllocatesLittle: training checks its dictionary on the held-out samples with a codec of its own,
// whose encoder's history is sized to those samples. Sized to any body at all it was zstd's largest window:
// a training allocated (and cleared) over 1 GB for 1,000 samples of 1.3 KB.
func TestTrainAllocatesLittle(t *testing.T) {
	samples := answers(3, 1000, 1300)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := Train(1, samples, 64<<10, 0, nil); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if mb := (after.TotalAlloc - before.TotalAlloc) >> 20; mb > 256 {
		t.Fatalf("training on 1,000 samples of 1.3 KB allocated %d MB", mb)
	}
}

// TestTrainJudgesAsTheStoreCompresses: what Train reports for its held-out samples (every tenth) is what a
// store's codec with the new dictionary makes of them; a check codec whose window left the dictionary out of
// reach judged good dictionaries worse than the current one, and a retrain was never kept.
func TestTrainJudgesAsTheStoreCompresses(t *testing.T) {
	samples := answers(4, 500, 1300)
	d, err := Train(1, samples, 64<<10, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := New(Options{})
	if err := c.Add(d.Dict, true); err != nil {
		t.Fatal(err)
	}
	var want int64
	for i := 9; i < len(samples); i += 10 {
		_, frame := c.Encode(nil, samples[i])
		want += int64(len(frame))
	}
	if d.DictBytes != want {
		t.Fatalf("Train judged the held-out samples at %d bytes, the store's codec makes %d of them", d.DictBytes, want)
	}
}

// TestTrainOnShortAnswers: a dictionary trains on short answers (the store samples bodies from 64 bytes),
// whose check codec's window, rounded up to a power of two, is larger than the dictionary and the largest
// sample: its decoder must accept that window ("window size exceeded" refused every such training).
func TestTrainOnShortAnswers(t *testing.T) {
	for _, n := range []int{100, 150} {
		if _, err := Train(1, answers(4, 200, n), 64<<10, 0, nil); err != nil {
			t.Errorf("samples of %d bytes: %v", n, err)
		}
	}
}
