package pipeline

import "time"

// recentAnswers holds answers stored a moment ago, for RecentGrace: a request that looked in memory and
// SQLite just before the answer was stored would otherwise make a second upstream call for an answer
// already paid for (with the memory layer on it finds the answer in memory; this covers it off, or the
// answer evicted). Each remembers the storer's epoch: after a delete it is not served. Only the scheduler
// uses it, under its mutex.
type recentAnswers struct {
	byKey map[Key]*recentAnswer
	q     []*recentAnswer // oldest first
	bytes int64           // of the bodies in q
	grace time.Duration
}

type recentAnswer struct {
	key   Key
	resp  Response
	entry *memEntry
	epoch int64
	at    time.Time
}

// maxRecent and maxRecentBytes bound the recent answers kept: a burst of large answers must not hold
// gigabytes for a second and a half.
const (
	maxRecent      = 8192
	maxRecentBytes = 32 << 20
)

// get returns k's recent answer, if one is still within the grace at now.
func (r *recentAnswers) get(k Key, now time.Time) *recentAnswer {
	r.expire(now)
	return r.byKey[k]
}

func (r *recentAnswers) remember(k Key, res *attemptResult, now time.Time) {
	a := &recentAnswer{key: k, resp: res.resp, entry: res.entry, epoch: res.epoch, at: now}
	r.byKey[k] = a
	r.q = append(r.q, a)
	r.bytes += int64(len(a.resp.Body))
	for len(r.q) > maxRecent || r.bytes > maxRecentBytes {
		r.drop()
	}
}

// expire drops the answers older than the grace.
func (r *recentAnswers) expire(now time.Time) {
	for len(r.q) > 0 && now.Sub(r.q[0].at) > r.grace {
		r.drop()
	}
}

// nextExpiry is when the oldest answer leaves.
func (r *recentAnswers) nextExpiry() (time.Time, bool) {
	if len(r.q) == 0 {
		return time.Time{}, false
	}
	return r.q[0].at.Add(r.grace + time.Millisecond), true
}

func (r *recentAnswers) drop() {
	a := r.q[0]
	r.q[0] = nil
	r.q = r.q[1:]
	r.bytes -= int64(len(a.resp.Body))
	if r.byKey[a.key] == a {
		delete(r.byKey, a.key)
	}
}
