package pipeline

import (
	"sync/atomic"
	"time"

	json "github.com/goccy/go-json"

	"llmcache/pipeline/wire"
)

// Health is an endpoint's state as the scheduler sees it.
type Health int32

const (
	Healthy Health = iota // takes calls
	Ejected               // eject_after consecutive failures: rests for eject_seconds
	Probing               // the rest is over and one call is testing it; the others wait for its result
)

func (h Health) String() string {
	switch h {
	case Ejected:
		return "ejected"
	case Probing:
		return "probing"
	}
	return "healthy"
}

// outcome is how one upstream attempt went, for the endpoint's health, its counters and the retry decision.
type outcome uint8

const (
	outcomeOK          outcome = iota // an answer (200) that is valid
	outcomeRefused                    // a 4xx other than 408/429: the endpoint works, the request is wrong; never retried
	outcomeTimeout                    // connect, first-byte or whole-call timeout
	outcomeUnreachable                // refused, reset, DNS, TLS
	outcomeThrottled                  // 429 or 408
	outcomeServerError                // 5xx
	outcomeInvalid                    // 200 with a body that is not the JSON the route promises
	outcomeCut                        // a live stream that broke off after reaching clients: not retried
	outcomeNotSent                    // nothing was sent (the request could not fit the context window)
	outcomeFromStore                  // nothing was sent: the shared store had the answer (another instance's flight)
	outcomeCount
)

// retryable reports whether another attempt (after a pause, elsewhere when possible) may succeed.
func (o outcome) retryable() bool {
	switch o {
	case outcomeTimeout, outcomeUnreachable, outcomeThrottled, outcomeServerError, outcomeInvalid:
		return true
	}
	return false
}

// failure reports whether the outcome counts against the endpoint's health.
func (o outcome) failure() bool {
	return o != outcomeOK && o != outcomeRefused && o != outcomeNotSent && o != outcomeFromStore
}

// errorKinds names the error outcomes in /stats and /metrics.
var errorKinds = [outcomeCount]string{
	outcomeRefused:     "status_4xx",
	outcomeTimeout:     "timeout",
	outcomeUnreachable: "unreachable",
	outcomeThrottled:   "status_429",
	outcomeServerError: "status_5xx",
	outcomeInvalid:     "invalid_response",
	outcomeCut:         "stream_cut",
}

// statusOutcome classifies an upstream answer by its status.
func statusOutcome(status int) outcome {
	switch {
	case status == 200:
		return outcomeOK
	case status == 429 || status == 408:
		return outcomeThrottled
	case status >= 500:
		return outcomeServerError
	}
	return outcomeRefused
}

// endpointState is the scheduler's view of one endpoint. The scheduler alone (under its mutex) changes the
// scheduling fields; callers read the fixed ones and add to the counters.
type endpointState struct {
	index     int // in the configuration, for a call's failedOn set
	cfg       *Endpoint
	urls      [NumKinds]string // the URL of each route on this endpoint
	models    wire.Target      // cfg.Target with the models listing's shorter timeout
	modelJSON []byte           // cfg.Model as a JSON string, nil when there is no override
	window    int              // context window for trimming (its max_context_tokens, else the global one); 0 = trimming off

	// Scheduling, owned by the scheduler (under its mutex).
	current      int // smooth weighted round robin state
	inFlight     int
	failures     int       // consecutive failed requests (a request counts once, however many attempts it made)
	health       Health    // mirrored in healthGauge for readers
	ejectedUntil time.Time // while Ejected
	notBefore    time.Time // its last failure's Retry-After: no new call before then

	// Counters, readable from any goroutine.
	healthGauge atomic.Int32
	calls       atomic.Int64
	retries     atomic.Int64 // calls that retried an attempt that failed (here or elsewhere)
	ejections   atomic.Int64
	errs        [outcomeCount]atomic.Int64
	inFlightG   atomic.Int64
	latencySum  atomic.Int64 // microseconds, over every attempt
	lastError   atomic.Pointer[string]
}

// modelsFetchTimeout bounds one endpoint's answer to GET /models: a listing must not hang behind a slow
// endpoint for the ten minutes a completion may take.
const modelsFetchTimeout = 10 * time.Second

func newEndpointState(cfg *Config, i int) *endpointState {
	e := &cfg.Endpoints[i]
	st := &endpointState{index: i, cfg: e, models: e.Target}
	st.models.Timeout = min(e.Timeout, modelsFetchTimeout)
	for k := KindChat; k < numKinds; k++ {
		st.urls[k] = wire.RouteURL(e.URL, k.path())
	}
	if cfg.Trim.Enabled {
		st.window = cfg.Trim.MaxContextTokens
		if e.MaxContextTokens > 0 {
			st.window = e.MaxContextTokens
		}
	}
	if e.Model != "" {
		st.modelJSON, _ = json.Marshal(e.Model)
	}
	return st
}

// EndpointCounts is a snapshot of one endpoint's figures for /stats and /metrics.
type EndpointCounts struct {
	Name          string
	Health        Health
	Weight        int
	Calls         int64
	Retries       int64
	Ejections     int64
	InFlight      int64
	Errors        map[string]int64 // by kind: timeout, unreachable, status_429, status_5xx, status_4xx, invalid_response, stream_cut
	LatencyMeanMS float64          // mean over every attempt
	LastError     string
}

func (e *endpointState) counts() EndpointCounts {
	c := EndpointCounts{Name: e.cfg.Name, Health: Health(e.healthGauge.Load()), Weight: e.cfg.Weight, Calls: e.calls.Load(),
		Retries: e.retries.Load(), Ejections: e.ejections.Load(), InFlight: e.inFlightG.Load(), Errors: make(map[string]int64)}
	for o := range outcomeCount {
		if name := errorKinds[o]; name != "" {
			c.Errors[name] = e.errs[o].Load()
		}
	}
	if c.Calls > 0 {
		c.LatencyMeanMS = float64(e.latencySum.Load()) / float64(c.Calls) / 1000
	}
	if s := e.lastError.Load(); s != nil {
		c.LastError = *s
	}
	return c
}

// recordAttempt counts one finished attempt; called by the caller.
func (e *endpointState) recordAttempt(o outcome, took time.Duration, detail string) {
	e.latencySum.Add(took.Microseconds())
	if o != outcomeOK {
		e.errs[o].Add(1)
		if detail != "" {
			e.lastError.Store(&detail)
		}
	}
}

// setHealth changes the state and its mirror.
func (e *endpointState) setHealth(h Health) {
	e.health = h
	e.healthGauge.Store(int32(h))
}

// settleHealth applies an attempt's outcome to its endpoint: eject_after consecutive failed requests eject
// it for eject_seconds (a request counts once against an endpoint, however many of its attempts failed
// there: one bad prompt must not take the only endpoint out); a failed probe ejects it again; any answer
// from it (even a 400) shows it works.
//
// While a probe is out only the probe decides: calls started before the ejection and ending now say
// nothing about whether the rest helped.
func (s *scheduler) settleHealth(c *call, e *endpointState, o outcome, probe bool, now time.Time) {
	if e.health == Probing && !probe {
		return
	}
	if o == outcomeNotSent || o == outcomeFromStore {
		if e.health == Probing {
			e.setHealth(Ejected) // its rest is over: the next call probes it
		}
		return
	}
	if !o.failure() {
		e.failures = 0
		if e.health != Healthy {
			s.log.Info("upstream endpoint back in service", "endpoint", e.cfg.Name)
			e.setHealth(Healthy)
		}
		return
	}
	bit := uint64(1) << (e.index % 64)
	if c.failedOn&bit == 0 {
		c.failedOn |= bit
		e.failures++
	}
	if probe || (e.health == Healthy && e.failures >= s.cfg.EjectAfter) {
		e.ejectedUntil = now.Add(s.cfg.EjectFor)
		if e.health != Ejected {
			e.ejections.Add(1)
			last := ""
			if p := e.lastError.Load(); p != nil {
				last = *p
			}
			s.log.Warn("upstream endpoint ejected", "endpoint", e.cfg.Name, "consecutive_failures", e.failures,
				"for", s.cfg.EjectFor, "last_error", last)
		}
		e.setHealth(Ejected)
		// Its kept-alive connections may be what failed (an upstream restarted on its address leaves them
		// dead): the probe after the rest starts on a fresh one.
		s.caller.closeIdle(&e.cfg.Target)
	}
}

// usable reports whether e may take a call now (ignoring its own limit), and whether that call is a probe.
func (e *endpointState) usable(now time.Time) (ok, probe bool) {
	if now.Before(e.notBefore) {
		return false, false
	}
	switch e.health {
	case Healthy:
		return true, false
	case Ejected:
		return !now.Before(e.ejectedUntil), true
	}
	return false, false // a probe is out
}

// up reports whether e is in service or will be without a rest: healthy (perhaps pausing for a
// Retry-After) or being probed. Calls wait for such an endpoint rather than fail.
func (e *endpointState) up() bool { return e.health != Ejected }

// otherUsable reports whether an endpoint other than e could take c now, for a retry.
func (s *scheduler) otherUsable(c *call, e *endpointState, now time.Time) bool {
	if c.pin != nil {
		return false
	}
	for _, o := range s.endpoints {
		if ok, _ := o.usable(now); o != e && ok && o.fits(c.minWindow) {
			return true
		}
	}
	return false
}

// someFits reports whether any endpoint's window is at least minWindow tokens.
func (s *scheduler) someFits(minWindow int) bool {
	for _, e := range s.endpoints {
		if e.fits(minWindow) {
			return true
		}
	}
	return false
}

// fits reports whether e's context window is at least minWindow tokens (0: any will do).
func (e *endpointState) fits(minWindow int) bool {
	return minWindow == 0 || e.window == 0 || e.window >= minWindow
}

func (e *endpointState) full() bool {
	return e.cfg.MaxConcurrent > 0 && e.inFlight >= e.cfg.MaxConcurrent
}

// pickResult says why pick found no endpoint.
type pickResult uint8

const (
	picked    pickResult = iota
	saturated            // endpoints are up but at their limits (or a probe is out, or a Retry-After holds): wait
	allDown              // a pinned endpoint is ejected and resting: waiting would not help
)

// pick chooses an endpoint for c by smooth weighted round robin among the usable ones under their own
// limit, preferring any other endpoint to c.avoid (the one a retry just failed on). Standby endpoints
// (weight 0) take calls only while every weighted endpoint is ejected, or, with standby_on_saturation, also
// while every usable weighted one is full. With no weighted endpoint configured, all count as weight 1.
// Endpoints whose context window is below c.minWindow are left out altogether.
//
// When every endpoint that fits, standbys included, is ejected and resting, calls go to them anyway (panic
// mode, as Envoy does): failing everything would not help, and a success brings an endpoint back. They stay
// "ejected" in /stats meanwhile.
func (s *scheduler) pick(c *call, now time.Time) (e *endpointState, probe bool, why pickResult) {
	if p := c.pin; p != nil {
		ok, probe := p.usable(now)
		switch {
		case p.full() || (!ok && p.up()):
			return nil, false, saturated
		case !ok:
			return nil, false, allDown
		}
		if probe {
			p.setHealth(Probing)
		}
		return p, probe, picked
	}
	anyWeighted, weightedUp, anyUp := false, false, false
	for _, e := range s.endpoints {
		if !e.fits(c.minWindow) {
			continue
		}
		ok, _ := e.usable(now)
		if e.cfg.Weight > 0 {
			anyWeighted = true
			// A weighted endpoint being probed still counts as ejected; one pausing for a Retry-After does not.
			weightedUp = weightedUp || ok || e.health == Healthy
		}
		if ok || e.up() {
			anyUp = true
		}
	}
	if !anyUp {
		if e := s.pickPanic(c, now); e != nil {
			return e, false, picked
		}
		return nil, false, saturated
	}
	tiers := []bool{false} // false: the weighted tier; true: the standby tier
	if !anyWeighted || !weightedUp {
		tiers = []bool{true} // with no weighted endpoint at all, every endpoint is in the standby tier
	} else if s.cfg.StandbyOnSaturation {
		tiers = []bool{false, true}
	}
	for _, standby := range tiers {
		if e, probe := s.pickIn(standby, c.avoid, c.minWindow, now); e != nil {
			return e, probe, picked
		}
		if e, probe := s.pickIn(standby, nil, c.minWindow, now); e != nil {
			return e, probe, picked
		}
	}
	return nil, false, saturated
}

// pickPanic picks among ejected endpoints when every one is: the least loaded that fits, under its own
// limit and not held by a Retry-After, weighted ones first.
func (s *scheduler) pickPanic(c *call, now time.Time) *endpointState {
	var best *endpointState
	for _, e := range s.endpoints {
		if !e.fits(c.minWindow) || e.full() || now.Before(e.notBefore) {
			continue
		}
		if best == nil || (e.cfg.Weight > 0) != (best.cfg.Weight > 0) && e.cfg.Weight > 0 ||
			(e.cfg.Weight > 0) == (best.cfg.Weight > 0) && e.inFlight < best.inFlight {
			best = e
		}
	}
	return best
}

// pickIn runs one round of smooth weighted round robin over one tier, skipping avoid.
func (s *scheduler) pickIn(standby bool, avoid *endpointState, minWindow int, now time.Time) (*endpointState, bool) {
	total := 0
	var best *endpointState
	bestProbe := false
	for _, e := range s.endpoints {
		if (e.cfg.Weight == 0) != standby || e == avoid || e.full() || !e.fits(minWindow) {
			continue
		}
		ok, probe := e.usable(now)
		if !ok {
			continue
		}
		w := max(e.cfg.Weight, 1)
		e.current += w
		total += w
		if best == nil || e.current > best.current {
			best, bestProbe = e, probe
		}
	}
	if best == nil {
		return nil, false
	}
	best.current -= total
	if bestProbe {
		best.setHealth(Probing)
	}
	return best, bestProbe
}
