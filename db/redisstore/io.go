package redisstore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/valkey-io/valkey-go"

	"llmcache/db"
)

// reader is a db.Reader on the shared client: every miss-pool slot has one, and the client pipelines
// their calls on its connections.
type reader struct{ s *Store }

// OpenReader implements db.Store.
func (s *Store) OpenReader() (db.Reader, error) {
	if s.closed.Load() {
		return nil, db.ErrClosed
	}
	return reader{s}, nil
}

func (reader) Close() error { return nil }

// Get implements db.Reader: one HMGET of the record, body and hit figures.
func (r reader) Get(key *db.Key, e *db.Entry) (bool, error) {
	s := r.s
	c, err := s.c()
	if err != nil {
		s.figures.readErrors.Add(1)
		return false, fmt.Errorf("cannot read from the shared store: %w", err)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	began := time.Now()
	vals, err := c.Do(ctx, c.B().Hmget().Key(s.entryKey(keyHex(key))).Field("m", "b", "n", "t").Build()).ToArray()
	s.figures.read(time.Since(began))
	if err != nil {
		return false, s.readFailed(key, err)
	}
	found, err := s.decodeEntry(key, vals, e)
	if err != nil {
		return false, s.readFailed(key, err)
	}
	return found, nil
}

// GetResponse implements db.Reader: the key the response id index names, then Get, if the entry found
// belongs to namespace.
func (r reader) GetResponse(id, namespace string, e *db.Entry) (bool, error) {
	s := r.s
	c, err := s.c()
	if err != nil {
		s.figures.readErrors.Add(1)
		return false, fmt.Errorf("cannot read from the shared store: %w", err)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	h, err := c.Do(ctx, c.B().Get().Key(s.responseKey(id, namespace)).Build()).ToString()
	if valkey.IsValkeyNil(err) {
		return false, nil
	}
	if err != nil {
		s.figures.readErrors.Add(1)
		return false, fmt.Errorf("cannot read from the shared store: %w", err)
	}
	var key db.Key
	if b, err := hex.DecodeString(h); err != nil || len(b) != len(key) {
		return false, nil // not an index entry of ours: as if absent
	} else {
		copy(key[:], b)
	}
	found, err := r.Get(&key, e)
	if err != nil || !found || e.Namespace != namespace {
		return false, err
	}
	return true, nil
}

// readFailed counts and (for garbage) logs a failed read, and words its error.
func (s *Store) readFailed(key *db.Key, err error) error {
	if errors.Is(err, errGarbage) || isServerError(err) {
		// The store answered something that is not an entry of ours (a WRONGTYPE key, a damaged record):
		// served as a miss, and the fresh answer replaces it.
		s.figures.decodeErrors.Add(1)
		s.figures.garbageLog.log(s.log, "a shared store entry does not decode; served as a miss", "key", keyHex(key), "err", err)
		return fmt.Errorf("cannot read entry %s from the shared store: %w", keyHex(key), err)
	}
	s.figures.readErrors.Add(1)
	return fmt.Errorf("cannot read from the shared store at %s: %w", s.where, err)
}

func isServerError(err error) bool {
	_, ok := valkey.IsValkeyErr(err)
	return ok && !valkey.IsValkeyNil(err)
}

// decodeEntry fills e from an HMGET m b n t reply; false when the entry is absent.
func (s *Store) decodeEntry(key *db.Key, vals []valkey.ValkeyMessage, e *db.Entry) (bool, error) {
	if len(vals) != 4 {
		return false, fmt.Errorf("%w: %d fields", errGarbage, len(vals))
	}
	if vals[0].IsNil() {
		return false, nil // absent (or a stray hash without a record: nothing to serve either)
	}
	rec, err1 := vals[0].ToString()
	body, err2 := vals[1].ToString()
	if err := errors.Join(err1, err2); err != nil {
		return false, fmt.Errorf("%w: %v", errGarbage, err)
	}
	m, err := decodeRecord(rec)
	if err == nil {
		err = m.check(rec, body, key)
	}
	if err != nil {
		return false, err
	}
	m.fill(e)
	e.Body = append(e.Body[:0], body...)
	e.HitCount, e.LastHitAt = intField(&vals[2]), intField(&vals[3])
	return true, nil
}

// intField reads a hit figure; a missing or unreadable one is 0 (it never decides an answer).
func intField(m *valkey.ValkeyMessage) int64 {
	if m.IsNil() {
		return 0
	}
	s, err := m.ToString()
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// touchScript adds hits to an entry that exists, and never makes one: a hit counted for an entry deleted
// meanwhile must not leave a hash with only a count in it.
const touchScript = `if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'n', ARGV[1])
local t = tonumber(redis.call('HGET', KEYS[1], 't')) or 0
if tonumber(ARGV[2]) > t then redis.call('HSET', KEYS[1], 't', ARGV[2]) end
return 1`

var touchLua = newScript(touchScript)

// putCommands appends the commands that replace e's entry: DEL (a fresh answer replaces the whole entry,
// its hit figures and expiry, whatever held the key), HSET, and PEXPIREAT when it expires. A reader sees
// the old entry, none, or the new one.
func (s *Store) putCommands(c valkey.Client, cmds valkey.Commands, e *db.Entry, scratch []byte) (valkey.Commands, []byte) {
	k := s.entryKey(keyHex(&e.Key))
	rec := appendRecord(scratch[:0], e)
	cmds = append(cmds, c.B().Del().Key(k).Build(),
		c.B().Hset().Key(k).FieldValue().FieldValue("m", string(rec)).FieldValue("b", valkey.BinaryString(e.Body)).
			FieldValue("n", strconv.FormatInt(e.HitCount, 10)).FieldValue("t", strconv.FormatInt(e.LastHitAt, 10)).Build())
	if e.ExpiresAt > 0 {
		cmds = append(cmds, c.B().Pexpireat().Key(k).MillisecondsTimestamp(e.ExpiresAt).Build())
	}
	if e.ResponseID != "" {
		// The Responses API's index: the id of the response an entry holds, in its namespace, names its key.
		// It outlives a deleted entry harmlessly (GetResponse finds no entry then), and expires with it.
		rk := s.responseKey(e.ResponseID, e.Namespace)
		cmds = append(cmds, c.B().Set().Key(rk).Value(keyHex(&e.Key)).Build())
		if e.ExpiresAt > 0 {
			cmds = append(cmds, c.B().Pexpireat().Key(rk).MillisecondsTimestamp(e.ExpiresAt).Build())
		}
	}
	return cmds, rec
}

// WriteBatch implements db.Store: the puts in one pipeline, then the hit counts, then the release of the
// flight locks whose answers these puts are (the other instances read them once told). An error from the
// store's side (out of memory, unreachable) fails the batch, which the writer keeps and retries; a hit
// count the store refuses (an entry that is not ours) is dropped.
func (s *Store) WriteBatch(b *db.Batch) error {
	if b == nil || b.Len() == 0 {
		return nil
	}
	c, err := s.c()
	if err != nil {
		s.figures.writeErrors.Add(1)
		return fmt.Errorf("cannot write to the shared store at %s: %w", s.where, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.OpTimeout+time.Duration(len(b.Puts))*time.Millisecond)
	defer cancel()
	began := time.Now()
	err = s.writeBatch(ctx, c, b)
	s.figures.write(time.Since(began))
	if err != nil {
		s.figures.writeErrors.Add(1)
		return fmt.Errorf("cannot write to the shared store at %s: %w", s.where, err)
	}
	s.figures.puts.Add(int64(len(b.Puts)))
	return nil
}

func (s *Store) writeBatch(ctx context.Context, c valkey.Client, b *db.Batch) error {
	var cmds valkey.Commands
	var scratch []byte
	var written, refreshed []db.Key
	for _, e := range b.Puts {
		if e == nil {
			continue
		}
		cmds, scratch = s.putCommands(c, cmds, e, scratch)
		written = append(written, e.Key)
		if e.Refresh {
			refreshed = append(refreshed, e.Key)
		}
	}
	if len(cmds) > 0 {
		for _, r := range c.DoMulti(ctx, cmds...) {
			if err := r.Error(); err != nil {
				return err
			}
		}
	}
	if len(b.Touches) > 0 {
		calls := make([]scriptCall, len(b.Touches))
		for i := range b.Touches {
			t := &b.Touches[i]
			calls[i] = scriptCall{keys: []string{s.entryKey(keyHex(&t.Key))},
				args: []string{strconv.FormatInt(t.Hits, 10), strconv.FormatInt(t.At, 10)}}
		}
		for _, r := range touchLua.run(ctx, c, calls) {
			if err := r.Error(); err != nil && !isServerError(err) {
				return err
			}
		}
	}
	s.flights.written(ctx, s, c, written)
	if len(refreshed) > 0 {
		// The other instances may hold the answers these replace in memory. Best effort: the new answers are
		// written, and a failed message only leaves the old ones served a while longer.
		if err := s.events.publishDrop(s, c, refreshed, false); err != nil {
			s.log.Warn("cannot tell the other instances that answers were refreshed", "entries", len(refreshed), "err", err)
		}
	}
	return nil
}

// Delete implements db.Store: keys by DEL, filters by a scan of every entry's record (filters may scan the
// whole store), then tells the other instances to drop what went from their memory layers before it
// returns.
func (s *Store) Delete(f db.Filter) (int64, error) {
	if len(f.Keys) == 0 && f.Namespace == nil && f.Model == "" && f.OlderThan == 0 && f.ExpiredBy == 0 && f.UnusedBefore == 0 && !f.All {
		return 0, errors.New("cannot delete from the shared store: empty filter (set a field, or All)")
	}
	c, err := s.c()
	if err != nil {
		return 0, fmt.Errorf("cannot delete from the shared store at %s: %w", s.where, err)
	}
	var n int64
	if len(f.Keys) > 0 {
		n, err = s.deleteKeys(c, &f)
	} else {
		n, err = s.deleteMatching(&f)
	}
	if err != nil {
		return n, fmt.Errorf("cannot delete from the shared store at %s: %w", s.where, err)
	}
	if err := s.events.publishDrop(s, c, f.Keys, len(f.Keys) == 0); err != nil {
		return n, fmt.Errorf("deleted %d entries, but cannot tell the other instances to drop them from their memory: %w", n, err)
	}
	return n, nil
}

func (s *Store) deleteKeys(c valkey.Client, f *db.Filter) (int64, error) {
	var n int64
	for keys := f.Keys; len(keys) > 0; {
		chunk := keys[:min(len(keys), 1000)]
		keys = keys[len(chunk):]
		if f.Namespace != nil || f.Model != "" || f.OlderThan != 0 {
			// Keys and a filter: each key's record decides, like the rest of a filter.
			c, err := s.deleteChecked(chunk, f)
			n += c
			if err != nil {
				return n, err
			}
			continue
		}
		cmds := make(valkey.Commands, len(chunk))
		for i := range chunk {
			cmds[i] = c.B().Del().Key(s.entryKey(keyHex(&chunk[i]))).Build()
		}
		ctx, cancel := s.ctx()
		res := c.DoMulti(ctx, cmds...)
		cancel()
		for _, r := range res {
			d, err := r.AsInt64()
			if err != nil {
				return n, err
			}
			n += d
		}
	}
	return n, nil
}

// deleteChecked deletes those of keys whose entries f matches.
func (s *Store) deleteChecked(keys []db.Key, f *db.Filter) (int64, error) {
	names := make([]string, len(keys))
	for i := range keys {
		names[i] = s.entryKey(keyHex(&keys[i]))
	}
	c, err := s.c()
	if err != nil {
		return 0, err
	}
	return s.deleteNames(c, names, f)
}

// delIfScript deletes an entry only if its record is still the one the filter matched: an answer stored
// between the read and the delete is not deleted by a filter it may not match.
var delIfLua = newScript(`if redis.call('HGET', KEYS[1], 'm') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// deleteNames deletes the entries named that f matches (all of them with f.All), reading their records.
func (s *Store) deleteNames(c valkey.Client, names []string, f *db.Filter) (int64, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	if f.All {
		cmds := make(valkey.Commands, len(names))
		for i, k := range names {
			cmds[i] = c.B().Unlink().Key(k).Build()
		}
		var n int64
		for _, r := range c.DoMulti(ctx, cmds...) {
			d, err := r.AsInt64()
			if err != nil {
				return n, err
			}
			n += d
		}
		return n, nil
	}
	cmds := make(valkey.Commands, len(names))
	for i, k := range names {
		cmds[i] = c.B().Hmget().Key(k).Field("m", "n", "t").Build()
	}
	var calls []scriptCall
	for i, r := range c.DoMulti(ctx, cmds...) {
		vals, err := r.ToArray()
		if err != nil {
			if isServerError(err) {
				continue // not an entry of ours
			}
			return 0, err
		}
		if len(vals) != 3 || vals[0].IsNil() {
			continue
		}
		rec, _ := vals[0].ToString()
		m, err := decodeRecord(rec)
		if err != nil || !matches(&m, intField(&vals[1]), intField(&vals[2]), f) {
			continue
		}
		calls = append(calls, scriptCall{keys: []string{names[i]}, args: []string{rec}})
	}
	var n int64
	for _, r := range delIfLua.run(ctx, c, calls) {
		d, err := r.AsInt64()
		if err != nil {
			return n, err
		}
		n += d
	}
	return n, nil
}

// matches applies a filter's fields (AND) to one entry's record and hit figures.
func matches(m *meta, hits, lastHit int64, f *db.Filter) bool {
	switch {
	case f.Namespace != nil && m.namespace != *f.Namespace:
		return false
	case f.Model != "" && m.model != f.Model:
		return false
	case f.OlderThan != 0 && m.createdAt >= f.OlderThan:
		return false
	case f.ExpiredBy != 0 && (m.expiresAt == 0 || m.expiresAt > f.ExpiredBy):
		return false
	case f.UnusedBefore != 0 && (m.createdAt >= f.UnusedBefore || lastHit >= f.UnusedBefore || hits >= f.HitsBelow):
		return false
	}
	return true
}

// scanEntries calls fn with each batch of entry key names, on every primary node.
func (s *Store) scanEntries(fn func(c valkey.Client, names []string) error) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nodes, err := s.masters(ctx)
	if err != nil {
		return err
	}
	pattern := s.entryPattern()
	for _, n := range nodes {
		cursor := uint64(0)
		for {
			cctx, ccancel := s.ctx()
			e, err := n.Do(cctx, n.B().Scan().Cursor(cursor).Match(pattern).Count(1000).Build()).AsScanEntry()
			ccancel()
			if err != nil {
				return err
			}
			if len(e.Elements) > 0 {
				if err := fn(n, e.Elements); err != nil {
					return err
				}
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
	return nil
}

func (s *Store) deleteMatching(f *db.Filter) (int64, error) {
	var n int64
	err := s.scanEntries(func(c valkey.Client, names []string) error {
		d, err := s.deleteNames(c, names, f)
		n += d
		if f.Limit > 0 && n >= int64(f.Limit) {
			return errEnough
		}
		return err
	})
	if errors.Is(err, errEnough) {
		err = nil
	}
	return n, err
}

var errEnough = errors.New("enough")

// Export calls fn with every entry (of *namespace when set). It scans the whole store; e.Body is valid
// only until fn returns. An entry that does not decode is skipped and counted as garbage.
func (s *Store) Export(namespace *string, fn func(e *db.ExportedEntry) error) error {
	var stop errStop
	var out db.ExportedEntry
	var e db.Entry
	err := s.scanEntries(func(c valkey.Client, names []string) error {
		for len(names) > 0 {
			chunk := names[:min(len(names), 100)]
			names = names[len(chunk):]
			cmds := make(valkey.Commands, len(chunk))
			for i, k := range chunk {
				cmds[i] = c.B().Hmget().Key(k).Field("m", "b", "n", "t").Build()
			}
			ctx, cancel := s.ctx()
			res := c.DoMulti(ctx, cmds...)
			cancel()
			for i, r := range res {
				key, ok := s.keyOfEntry(chunk[i])
				vals, err := r.ToArray()
				if err != nil && !isServerError(err) {
					return err
				}
				if !ok || err != nil {
					s.figures.decodeErrors.Add(1)
					continue
				}
				found, err := s.decodeEntry(&key, vals, &e)
				if err != nil {
					s.readFailed(&key, err)
					continue
				}
				if !found || (namespace != nil && e.Namespace != *namespace) {
					continue
				}
				out = db.ExportedEntry{Key: keyHex(&key), Kind: e.Kind, Namespace: e.Namespace, Model: e.Model, Endpoint: e.Endpoint,
					UpstreamModel: e.UpstreamModel, ContentType: e.ContentType, Version: e.Version, CreatedAt: e.CreatedAt,
					LastHitAt: e.LastHitAt, HitCount: e.HitCount, ExpiresAt: e.ExpiresAt, Body: e.Body}
				if out.Body == nil {
					out.Body = []byte{}
				}
				if err := fn(&out); err != nil {
					return errStop{err}
				}
			}
		}
		return nil
	})
	if errors.As(err, &stop) {
		return stop.err
	}
	if err != nil {
		return fmt.Errorf("cannot export the shared store at %s: %w", s.where, err)
	}
	return nil
}

type errStop struct{ err error }

func (e errStop) Error() string { return e.err.Error() }

// Import upserts entries (every one validated first), with their hit figures, in pipelines of the batch.
func (s *Store) Import(entries []db.ExportedEntry) error {
	for i := range entries {
		if err := entries[i].Validate(); err != nil {
			return fmt.Errorf("cannot import into the shared store: entry %d: %w", i, err)
		}
	}
	b := db.Batch{Puts: make([]*db.Entry, len(entries))}
	for i := range entries {
		x := &entries[i]
		e := &db.Entry{Body: x.Body, ContentType: x.ContentType, Kind: x.Kind, Namespace: x.Namespace, Model: x.Model,
			Endpoint: x.Endpoint, UpstreamModel: x.UpstreamModel, Version: x.Version, CreatedAt: x.CreatedAt,
			LastHitAt: x.LastHitAt, HitCount: x.HitCount, ExpiresAt: x.ExpiresAt}
		hex.Decode(e.Key[:], []byte(x.Key)) // validated above
		b.Puts[i] = e
	}
	if err := s.WriteBatch(&b); err != nil {
		return fmt.Errorf("cannot import into the shared store: %w", err)
	}
	return nil
}

// Breakdown counts the entries and body bytes per kind and per namespace, each sorted by name. It scans
// the whole store.
func (s *Store) Breakdown() (kinds, namespaces []db.Count, err error) {
	byKind, byNS := map[string]*db.Count{}, map[string]*db.Count{}
	err = s.scanEntries(func(c valkey.Client, names []string) error {
		cmds := make(valkey.Commands, len(names))
		for i, k := range names {
			cmds[i] = c.B().Hget().Key(k).Field("m").Build()
		}
		ctx, cancel := s.ctx()
		defer cancel()
		for _, r := range c.DoMulti(ctx, cmds...) {
			rec, err := r.ToString()
			if err != nil {
				if isServerError(err) {
					continue
				}
				return err
			}
			m, err := decodeRecord(rec)
			if err != nil {
				continue
			}
			for _, g := range []struct {
				into map[string]*db.Count
				name string
			}{{byKind, m.kind}, {byNS, m.namespace}} {
				cnt := g.into[g.name]
				if cnt == nil {
					cnt = &db.Count{Name: g.name}
					g.into[g.name] = cnt
				}
				cnt.Entries++
				cnt.BodyBytes += int64(m.bodyLen)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("cannot count the entries of the shared store at %s: %w", s.where, err)
	}
	return sorted(byKind), sorted(byNS), nil
}
