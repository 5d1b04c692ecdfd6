// Package codec compresses stored answer bodies with zstd and dictionaries trained from a store's own
// answers. It knows nothing of where bodies or dictionaries are kept: a store (SQLite, a shared one) keeps
// each body with its encoding and the dictionaries under their ids, adds them to a Codec when it opens, and
// trains new ones with Train.
//
// An encoding is a number stored beside each body: Identity (0) is the body as it is; any other number is
// the id of the dictionary the body was compressed with (a zstd frame that names it too). Dictionaries are
// only ever added, never replaced: a body compressed with an old dictionary stays readable after a retrain.
//
// A Codec is safe for concurrent use. Encode and Decode allocate nothing once their destination buffers
// have grown.
package codec

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/dict"
	"github.com/klauspost/compress/zstd"
)

// Identity is the encoding of a body kept as it is.
const Identity = 0

// Dict is a trained dictionary: ID is the encoding of the bodies compressed with it (1 and up), Data the
// dictionary in zstd's format.
type Dict struct {
	ID   uint32
	Data []byte
}

// ErrCorrupt matches (errors.Is) the error of Decode for a body that is not what its encoding says: a
// damaged frame, a checksum that does not match, a frame of another dictionary.
var ErrCorrupt = errors.New("stored body is corrupt")

// ErrUnknownDict matches the error of Decode for an encoding whose dictionary was never added.
var ErrUnknownDict = errors.New("stored body names a dictionary this codec does not have")

// Options tunes New. The zero value gives the defaults.
type Options struct {
	// MinBytes: smaller bodies stay Identity (a frame's header and checksum are ~12 bytes). Default 64.
	MinBytes int
	// MaxBytes: larger bodies stay Identity, and a frame claiming more is corrupt. Default 1 MiB.
	MaxBytes int
	// Level is zstd's encoder level. Default zstd.SpeedFastest: on ~1.3 KB answers with a dictionary it
	// compresses about as well as the slower levels (BenchmarkCodec: ratio 0.290 against 0.328 for
	// SpeedDefault and 0.285 for SpeedBetter) in half the time of SpeedDefault and a third of SpeedBetter's
	// (14.6 µs against 31 and 40 µs; decoding ~2.4 µs whatever the level).
	Level zstd.EncoderLevel
}

// Codec encodes bodies with its current dictionary and decodes those of every dictionary added to it.
type Codec struct {
	opts  Options
	mu    sync.Mutex // serialises Add: each builds the next set from the last
	state atomic.Pointer[set]
}

// set is an immutable generation of a Codec: every Add makes a new one, so Encode and Decode never wait.
type set struct {
	dicts   map[uint32][]byte
	current uint32        // 0: none yet, Encode keeps bodies as they are
	enc     *zstd.Encoder // with the current dictionary; nil when current is 0
	dec     *zstd.Decoder // with every dictionary; nil when there is none
}

// New returns a codec without dictionaries: it encodes nothing until one is added.
func New(opts Options) *Codec {
	if opts.MinBytes <= 0 {
		opts.MinBytes = 64
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 1 << 20
	}
	if opts.Level == 0 {
		opts.Level = zstd.SpeedFastest
	}
	c := &Codec{opts: opts}
	c.state.Store(&set{dicts: map[uint32][]byte{}})
	return c
}

// Add makes d's bodies readable and, when current, compresses bodies with d from now on. Adding an id
// again with the same data is harmless (a second reader may load what the first did); with other data it
// is an error, since bodies already name that id.
func (c *Codec) Add(d Dict, current bool) error {
	if d.ID == Identity {
		return errors.New("cannot add dictionary: id 0 is the identity encoding")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.state.Load()
	if have, ok := old.dicts[d.ID]; ok {
		if !bytes.Equal(have, d.Data) {
			return fmt.Errorf("cannot add dictionary %d: another dictionary has that id", d.ID)
		}
		if !current || old.current == d.ID {
			return nil
		}
	}
	next := &set{dicts: make(map[uint32][]byte, len(old.dicts)+1), current: old.current, enc: old.enc, dec: old.dec}
	for id, data := range old.dicts {
		next.dicts[id] = data
	}
	next.dicts[d.ID] = slices.Clone(d.Data)
	if _, ok := old.dicts[d.ID]; !ok {
		// A decoder made for this set, with every dictionary. The old one is left to the garbage collector
		// rather than closed: a Decode may still be using it. Used through DecodeAll only, it runs no goroutine.
		all := make([][]byte, 0, len(next.dicts))
		for _, data := range next.dicts {
			all = append(all, data)
		}
		dec, err := zstd.NewReader(nil, zstd.WithDecoderDicts(all...), zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithDecoderMaxMemory(uint64(c.opts.MaxBytes)), zstd.WithDecoderLowmem(true))
		if err != nil {
			return fmt.Errorf("cannot add dictionary %d: %w", d.ID, err)
		}
		next.dec = dec
	}
	if current {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderDict(next.dicts[d.ID]), zstd.WithEncoderLevel(c.opts.Level),
			zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithEncoderCRC(true), zstd.WithLowerEncoderMem(true), zstd.WithWindowSize(encoderWindow(c.opts.MaxBytes)))
		if err != nil {
			return fmt.Errorf("cannot add dictionary %d: %w", d.ID, err)
		}
		next.enc, next.current = enc, d.ID
	}
	c.state.Store(next)
	return nil
}

// Has reports whether dictionary id was added.
func (c *Codec) Has(id uint32) bool {
	_, ok := c.state.Load().dicts[id]
	return ok
}

// Data is dictionary id's data (nil when it was never added); the caller must not modify it.
func (c *Codec) Data(id uint32) []byte { return c.state.Load().dicts[id] }

// Current is the id of the dictionary bodies are compressed with, 0 when there is none yet.
func (c *Codec) Current() uint32 { return c.state.Load().current }

// Len is the number of dictionaries added.
func (c *Codec) Len() int { return len(c.state.Load().dicts) }

// Encode compresses body with the current dictionary, appending the frame to dst[:0]. It returns Identity
// and dst unchanged when there is no dictionary yet, when body is outside [MinBytes, MaxBytes], or when the
// frame would not be smaller than body: the caller then stores body itself.
func (c *Codec) Encode(dst, body []byte) (uint32, []byte) {
	st := c.state.Load()
	if st.enc == nil || len(body) < c.opts.MinBytes || len(body) > c.opts.MaxBytes {
		return Identity, dst
	}
	out := st.enc.EncodeAll(body, dst[:0])
	if len(out) >= len(body) {
		return Identity, out[:0]
	}
	return st.current, out
}

// Decode appends to dst[:0] the body that src holds in encoding enc. Identity copies src. A frame that is
// damaged, whose checksum does not match, or that names another dictionary than enc is ErrCorrupt; a
// dictionary never added is ErrUnknownDict. dst's contents are unspecified after an error.
func (c *Codec) Decode(enc uint32, src, dst []byte) ([]byte, error) {
	if enc == Identity {
		return append(dst[:0], src...), nil
	}
	st := c.state.Load()
	if _, ok := st.dicts[enc]; !ok {
		return dst[:0], fmt.Errorf("%w: encoding %d", ErrUnknownDict, enc)
	}
	var h zstd.Header
	if err := h.Decode(src); err != nil || h.DictionaryID != enc {
		if err == nil {
			err = fmt.Errorf("the frame names dictionary %d", h.DictionaryID)
		}
		return dst[:0], fmt.Errorf("%w: encoding %d: %w", ErrCorrupt, enc, err)
	}
	out, err := st.dec.DecodeAll(src, dst[:0])
	if err != nil {
		return dst[:0], fmt.Errorf("%w: encoding %d: %w", ErrCorrupt, enc, err)
	}
	return out, nil
}

// Trained is the result of Train: the dictionary and how it did on the samples held out of training.
type Trained struct {
	Dict
	Samples   int   // samples the dictionary was built from
	HeldOut   int   // samples it was tested on
	RawBytes  int64 // their bytes
	DictBytes int64 // their bytes compressed with the new dictionary
	// CurrentBytes is their bytes compressed by the codec given to Train (its current dictionary, or as
	// they are when it has none): what the new dictionary has to beat.
	CurrentBytes int64
}

// Train builds dictionary id (of at most size bytes; 0: 64 KiB) from samples, bodies of the answers to
// compress. Every tenth sample is held out: the dictionary must give each of those back exactly from its
// frame (the builder is young; a dictionary that loses a byte is refused), and their compressed size is
// reported beside their size under against (may be nil), so that a caller can keep the current dictionary
// when the new one is no better. It takes seconds of CPU for a few thousand samples: run it off any hot
// path.
func Train(id uint32, samples [][]byte, size int, level zstd.EncoderLevel, against *Codec) (Trained, error) {
	if id == Identity {
		return Trained{}, errors.New("cannot train a dictionary: id 0 is the identity encoding")
	}
	if size <= 0 {
		size = 64 << 10
	}
	if level == 0 {
		level = zstd.SpeedFastest
	}
	var train, test [][]byte
	for i, s := range samples {
		if i%10 == 9 {
			test = append(test, s)
		} else {
			train = append(train, s)
		}
	}
	if len(train) < 8 || len(test) == 0 {
		return Trained{}, fmt.Errorf("cannot train a dictionary: %d samples are too few", len(samples))
	}
	// Matches of at least 8 bytes: on ~1.3 KB answers of prose a dictionary built so compresses them to
	// 0.285 of their size, against 0.303 with 7 and 0.320 with 6 (the builder's usual choice).
	data, err := buildDict(train, dict.Options{MaxDictSize: size, HashBytes: 8, ZstdDictID: id, ZstdLevel: level})
	if err != nil {
		return Trained{}, fmt.Errorf("cannot train a dictionary: %w", err)
	}
	t := Trained{Dict: Dict{ID: id, Data: data}, Samples: len(train), HeldOut: len(test)}
	// The held-out samples' codec: its window (hence each encoder's history buffer) fits the largest of
	// them, not any body at all, which would be zstd's largest window (512 MiB, allocated and cleared).
	// The window also spans the dictionary, which zstd reaches back into as into the body's own history: a
	// window of the largest sample alone left most of a 64 KiB dictionary out of reach, so a new dictionary
	// measured worse than the current one (checked with the stores' codec, whose window is 1 MiB) and no
	// retraining was ever kept. MaxBytes is that window, a power of two: the decoder refuses a frame whose
	// window is larger than MaxBytes, and the largest sample alone is not one ("window size exceeded").
	largest := 1
	for _, s := range test {
		largest = max(largest, len(s))
	}
	c := New(Options{Level: level, MinBytes: 1, MaxBytes: encoderWindow(len(data) + largest)})
	if err := c.Add(t.Dict, true); err != nil {
		return Trained{}, fmt.Errorf("cannot train a dictionary: the builder made one zstd refuses: %w", err)
	}
	var frame, back []byte
	for _, s := range test {
		var enc uint32
		if against == nil {
			t.CurrentBytes += int64(len(s))
		} else {
			if enc, frame = against.Encode(frame, s); enc == Identity {
				t.CurrentBytes += int64(len(s))
			} else {
				t.CurrentBytes += int64(len(frame))
			}
		}
		enc, frame = c.Encode(frame, s)
		t.RawBytes += int64(len(s))
		if enc == Identity {
			t.DictBytes += int64(len(s))
			continue
		}
		t.DictBytes += int64(len(frame))
		if back, err = c.Decode(enc, frame, back); err != nil || !bytes.Equal(back, s) {
			return Trained{}, fmt.Errorf("cannot train a dictionary: it does not give a sample back (%v)", err)
		}
	}
	return t, nil
}

// buildDict is dict.BuildZstdDict with its panics (it is young, and samples are arbitrary answers) turned
// into errors.
func buildDict(samples [][]byte, o dict.Options) (d []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("the dictionary builder panicked: %v", p)
		}
	}()
	return dict.BuildZstdDict(samples, o)
}

// encoderWindow is the zstd window for bodies of at most maxBytes: the smallest power of two that holds one
// (zstd's least is 1 KiB), so that every match within a body stays in reach, and each encoder's history
// buffer is the window plus a block instead of zstd's default of several MB per core.
func encoderWindow(maxBytes int) int {
	w := zstd.MinWindowSize
	for w < maxBytes && w < zstd.MaxWindowSize {
		w <<= 1
	}
	return w
}
