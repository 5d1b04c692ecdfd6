package redisstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"unsafe"

	"llmcache/db"
)

// An entry is a hash of four fields: m (the record: every column but the body, and a checksum), b (the
// body as it was answered), n (hit count) and t (last hit, unix ms). Hits live beside the record, so that
// counting one (HINCRBY) never rewrites a body, and the whole entry expires at once (PEXPIREAT on the key).
//
// The record is binary: "LLE1", a CRC-32C of everything after it and of the body, the entry's key (so
// that a record copied under another key is refused), then the columns. Anything that does not decode,
// or whose checksum does not match, is garbage: a miss and a logged error, never an answer.
const recordMagic = "LLE1"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errGarbage marks an entry that does not decode.
var errGarbage = errors.New("entry does not decode")

// appendRecord encodes e (but its body and hit figures) onto dst.
func appendRecord(dst []byte, e *db.Entry) []byte {
	start := len(dst)
	dst = append(dst, recordMagic...)
	dst = append(dst, 0, 0, 0, 0) // checksum, filled below
	dst = append(dst, e.Key[:]...)
	for _, s := range [...]string{e.ContentType, e.Kind, e.Namespace, e.Model, e.Endpoint, e.UpstreamModel} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	dst = binary.AppendVarint(dst, e.Version)
	dst = binary.AppendVarint(dst, e.CreatedAt)
	dst = binary.AppendVarint(dst, e.ExpiresAt)
	dst = binary.AppendUvarint(dst, uint64(len(e.Body)))
	sum := crc32.Update(crc32.Checksum(dst[start+8:], castagnoli), castagnoli, e.Body)
	binary.LittleEndian.PutUint32(dst[start+4:], sum)
	return dst
}

// meta is a decoded record, without the body.
type meta struct {
	key                                                          db.Key
	contentType, kind, namespace, model, endpoint, upstreamModel string
	version, createdAt, expiresAt                                int64
	bodyLen                                                      int
	sum                                                          uint32
}

// decodeRecord reads a record. It checks its shape, not its checksum (see check), so that a filter can read
// the columns without the body.
func decodeRecord(rec string) (m meta, err error) {
	if len(rec) < 8+32 || rec[:4] != recordMagic {
		return m, fmt.Errorf("%w: not an llmcache record", errGarbage)
	}
	m.sum = binary.LittleEndian.Uint32(bytesOf(rec[4:8]))
	copy(m.key[:], rec[8:40])
	p := rec[40:]
	str := func() string {
		n, w := binary.Uvarint(bytesOf(p[:min(len(p), binary.MaxVarintLen64)]))
		if w <= 0 || n > uint64(len(p)-w) {
			err = fmt.Errorf("%w: truncated record", errGarbage)
			p = ""
			return ""
		}
		s := p[w : w+int(n)]
		p = p[w+int(n):]
		return s
	}
	varint := func() int64 {
		v, w := binary.Varint(bytesOf(p[:min(len(p), binary.MaxVarintLen64)]))
		if w <= 0 {
			err = fmt.Errorf("%w: truncated record", errGarbage)
			p = ""
			return 0
		}
		p = p[w:]
		return v
	}
	m.contentType, m.kind, m.namespace, m.model, m.endpoint, m.upstreamModel = str(), str(), str(), str(), str(), str()
	m.version, m.createdAt, m.expiresAt = varint(), varint(), varint()
	n, w := binary.Uvarint(bytesOf(p[:min(len(p), binary.MaxVarintLen64)]))
	if err == nil && (w <= 0 || len(p) != w || n > 1<<40) {
		err = fmt.Errorf("%w: bad body length", errGarbage)
	}
	m.bodyLen = int(n)
	return m, err
}

// check verifies the record's checksum against body and that it belongs to key.
func (m *meta) check(rec, body string, key *db.Key) error {
	if m.key != *key {
		return fmt.Errorf("%w: the record belongs to another key", errGarbage)
	}
	if len(body) != m.bodyLen {
		return fmt.Errorf("%w: body is %d bytes, the record says %d", errGarbage, len(body), m.bodyLen)
	}
	sum := crc32.Update(crc32.Checksum(bytesOf(rec[8:]), castagnoli), castagnoli, bytesOf(body))
	if sum != m.sum {
		return fmt.Errorf("%w: checksum mismatch", errGarbage)
	}
	return nil
}

// fill sets e's columns from m, reusing e's strings where they are unchanged.
func (m *meta) fill(e *db.Entry) {
	e.Key = m.key
	setString(&e.ContentType, m.contentType)
	setString(&e.Kind, m.kind)
	setString(&e.Namespace, m.namespace)
	setString(&e.Model, m.model)
	setString(&e.Endpoint, m.endpoint)
	setString(&e.UpstreamModel, m.upstreamModel)
	e.Version, e.CreatedAt, e.ExpiresAt = m.version, m.createdAt, m.expiresAt
}

func setString(dst *string, s string) {
	if *dst != s {
		*dst = s
	}
}

// bytesOf is s's bytes without a copy, for functions that only read them (checksums, varints): the client
// hands replies as strings, and copying a body only to checksum it would double a hit's work.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
