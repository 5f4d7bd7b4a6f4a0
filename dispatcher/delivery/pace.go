package delivery

import (
	"context"
	"math"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/herald-dev/herald/dispatcher/sender"
)

// A pacer keeps one endpoint's attempts on this replica within its limits: the
// configured requestsPerSecond and maxInFlight, and, when the endpoint's limits are
// adaptive, lower ones while its receiver struggles.
//
// A struggling receiver says so by answering 429 or 503 or by not answering within the
// timeout (a throttle signal). On a signal, at most once per round (a second), the
// pacer lowers its rate to 90% of what the receiver accepted (2xx) in the last second,
// or halves it when the receiver accepted next to nothing, and halves its concurrency;
// a Retry-After pauses every attempt of the endpoint until it has passed, not only the
// answered one. Each round without a signal in which the rate was what held the
// attempts back raises it again: by 25% while it is far below the rate of the last
// signal (a receiver that recovered, or a first estimate made from a burst), by 5%
// (at least one request per second) near it, and the concurrency by one. A receiver
// that accepts R requests per second is thus sent a little under R, probing above it
// every few seconds, instead of the configured rate that it refuses. Once the
// adaptive limits are back at the configured ones, or no longer hold anything back
// for a few rounds, the endpoint is Healthy again.
//
// Fixed limits (spec.limits.adaptive false) use the same pacer without the signals.
type pacer struct {
	now func() time.Time

	mu sync.Mutex
	// The configured limits: maxRate 0 is no rate limit.
	maxRate   float64
	maxWindow int
	adaptive  bool

	// The current limits: rate 0 is none (rate.Inf); window bounds attempts in flight.
	rate     float64
	window   int
	inFlight int
	// waiting counts the attempts in acquire: held by a pause, the rate or the window.
	waiting int
	// changed is closed (and replaced) when an attempt ends or the window grows, to
	// wake the attempts waiting for a place in the window.
	changed chan struct{}
	limiter *rate.Limiter

	// The throttle episode: since when, the last signal, the rate it happened at.
	throttled   bool
	since       time.Time
	reason      string
	pausedUntil time.Time
	signalRate  float64

	// The round: its start, whether it saw a signal, attempts started and accepted in
	// it, and the accepted count of the previous round, which estimates what the
	// receiver takes per second.
	roundStart   time.Time
	roundSignal  bool
	started      int
	accepted     int
	lastAccepted float64
	calmRounds   int

	// notify hears of the start and end of a throttle episode.
	notify func()
	// idle ends an episode that no attempt ends: rounds close as attempts start and
	// end, so a receiver that recovered while nothing was left to send would otherwise
	// stay Throttled on status for good.
	idle *time.Timer
}

// Tuning of the pacer, in one place.
const (
	paceRound          = time.Second
	paceDecrease       = 0.5  // of the rate, when the receiver accepted next to nothing
	paceFromAccepted   = 0.9  // of what the receiver accepted, when it accepted some
	paceSlowStart      = 1.25 // raise per calm round far below the last signal
	paceProbe          = 0.05 // raise per calm round near it
	paceMinRate        = 0.5  // requests per second: never stop entirely
	paceLiftAfter      = 3    // calm rounds in which the limits held nothing back
	paceFarBelowSignal = 0.7  // "far below" the rate of the last signal
	// pauseInPlace is the longest Retry-After pause an attempt waits for holding its
	// delivery; a longer one hands the delivery back to the store until it ends.
	pauseInPlace = 2 * time.Second
)

func newPacer(now func() time.Time, notify func()) *pacer {
	return &pacer{now: now, notify: notify, changed: make(chan struct{}), limiter: rate.NewLimiter(rate.Inf, 1)}
}

// configure applies an endpoint's configured limits; an episode in progress keeps its
// lower limits, within the new ones.
func (p *pacer) configure(maxRate, maxWindow int, adaptive bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if maxWindow < 1 {
		maxWindow = 1
	}
	p.maxRate, p.maxWindow, p.adaptive = float64(maxRate), maxWindow, adaptive
	if !p.throttled || !adaptive {
		p.lift()
	}
	if p.maxRate > 0 && (p.rate == 0 || p.rate > p.maxRate) {
		p.rate = p.maxRate
	}
	p.window = min(max(p.window, 1), p.maxWindow)
	p.applyRate()
	p.wake()
}

// lift returns to the configured limits; p.mu is held.
func (p *pacer) lift() {
	p.throttled, p.reason, p.pausedUntil, p.signalRate, p.calmRounds = false, "", time.Time{}, 0, 0
	p.rate, p.window = p.maxRate, p.maxWindow
}

func (p *pacer) applyRate() {
	limit, burst := rate.Inf, 1
	if p.rate > 0 {
		limit = rate.Limit(p.rate)
		// A configured limit allows a tenth of a second's worth at once, as it always
		// did; a throttled one sends evenly.
		if !p.throttled {
			burst = max(1, int(p.rate)/10)
		}
	}
	p.limiter.SetLimit(limit)
	p.limiter.SetBurst(burst)
}

func (p *pacer) wake() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// pause is how long the receiver asked every attempt to wait (Retry-After); zero when
// it did not.
func (p *pacer) pause() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pausedUntil.Sub(p.now())
}

// acquire waits until the limits allow one more attempt: the pause, the rate and a
// place in the window. The caller calls done with the attempt's outcome.
func (p *pacer) acquire(ctx context.Context) error {
	p.mu.Lock()
	p.waiting++
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.waiting--
		p.mu.Unlock()
	}()
	if d := p.pause(); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	p.mu.Lock()
	l := p.limiter
	p.mu.Unlock()
	if err := l.Wait(ctx); err != nil {
		return err
	}
	for {
		p.mu.Lock()
		if p.inFlight < p.window {
			p.inFlight++
			p.roundLocked()
			p.started++
			p.mu.Unlock()
			return nil
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// released ends an attempt that did not happen (the engine stopped meanwhile).
func (p *pacer) released() {
	p.mu.Lock()
	p.inFlight--
	p.wake()
	p.mu.Unlock()
}

// done ends an attempt with its outcome and adapts the limits to it.
func (p *pacer) done(out sender.Outcome, maxRetryAfter time.Duration) {
	p.mu.Lock()
	// The round closes with this attempt still counted: a round it spent in flight was
	// not idle.
	p.roundLocked()
	p.inFlight--
	p.wake()
	changed := false
	if out.OK() {
		p.accepted++
	} else if reason := throttleSignal(out); reason != "" && p.adaptive {
		changed = p.signal(reason, out.RetryAfter, maxRetryAfter)
	}
	p.mu.Unlock()
	if changed && p.notify != nil {
		p.notify()
	}
}

// throttleSignal names the answer when it says the receiver struggles.
func throttleSignal(out sender.Outcome) string {
	switch {
	case out.StatusCode == http.StatusTooManyRequests:
		return "429"
	case out.StatusCode == http.StatusServiceUnavailable:
		return "503"
	case out.TimedOut:
		return "Timeout"
	}
	return ""
}

// signal lowers the limits, once per round; p.mu is held. It reports whether an
// episode began.
func (p *pacer) signal(reason string, retryAfter, maxRetryAfter time.Duration) bool {
	now := p.now()
	if retryAfter > 0 {
		if maxRetryAfter > 0 {
			retryAfter = min(retryAfter, maxRetryAfter)
		}
		if until := now.Add(retryAfter); until.After(p.pausedUntil) {
			p.pausedUntil = until
		}
	}
	p.reason = reason
	began := !p.throttled
	if p.roundSignal && !began {
		return false
	}
	p.roundSignal = true
	// What the receiver accepted over the last second: this round so far and the
	// rest from the previous one.
	elapsed := now.Sub(p.roundStart).Seconds()
	accepted := float64(p.accepted) + p.lastAccepted*max(0, 1-elapsed)
	current := p.rate
	if current == 0 || began {
		// Unlimited, or limited only by configuration: the rate it was sending at.
		current = max(float64(p.started)/max(elapsed, 0.1), accepted)
		if p.maxRate > 0 {
			current = min(current, p.maxRate)
		}
	}
	p.signalRate = current
	next := current * paceDecrease
	if accepted*paceFromAccepted > next {
		next = accepted * paceFromAccepted
	}
	next = max(min(next, current*paceFromAccepted), paceMinRate)
	if began {
		p.throttled, p.since = true, now
		p.armIdle()
	}
	p.rate, p.window, p.calmRounds = next, max(1, p.window/2), 0
	p.applyRate()
	return began
}

// roundLocked closes the round when a second has passed, raising the limits after a
// calm one; p.mu is held.
func (p *pacer) roundLocked() {
	now := p.now()
	if p.roundStart.IsZero() {
		p.roundStart = now
		return
	}
	elapsed := now.Sub(p.roundStart)
	if elapsed < paceRound {
		return
	}
	secs := elapsed.Seconds()
	p.lastAccepted = float64(p.accepted) / secs
	if p.throttled && !p.roundSignal && now.After(p.pausedUntil) {
		p.raise(float64(p.started) / secs)
		// The whole rounds after the first, and after the pause, started nothing: with
		// nothing waiting either, they were calm and the limits held nothing back.
		from := p.roundStart.Add(paceRound)
		if p.pausedUntil.After(from) {
			from = p.pausedUntil
		}
		if idle := int(now.Sub(from) / paceRound); p.throttled && idle > 0 && p.waiting == 0 && p.inFlight == 0 {
			p.calmRounds += idle
			if p.calmRounds >= paceLiftAfter {
				p.endEpisode()
			}
		}
	}
	p.roundStart, p.roundSignal, p.started, p.accepted = now, false, 0, 0
}

// armIdle has the round closed after a quiet spell while an episode lasts; p.mu is held.
func (p *pacer) armIdle() {
	d := time.Duration(paceLiftAfter+1) * paceRound
	if p.idle == nil {
		p.idle = time.AfterFunc(d, p.idleCheck)
		return
	}
	p.idle.Reset(d)
}

func (p *pacer) idleCheck() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.throttled {
		return
	}
	p.roundLocked()
	if p.throttled {
		p.armIdle()
	}
}

// raise lifts the limits after a calm round in which attempts started at sent per
// second; p.mu is held.
func (p *pacer) raise(sent float64) {
	held := sent >= 0.8*p.rate // the rate is what held the attempts back
	if !held {
		p.calmRounds++
		if p.calmRounds >= paceLiftAfter {
			p.endEpisode()
		}
		return
	}
	p.calmRounds = 0
	if p.rate < p.signalRate*paceFarBelowSignal {
		p.rate *= paceSlowStart
	} else {
		p.rate += max(1, p.rate*paceProbe)
	}
	if p.window < p.maxWindow {
		p.window++
		p.wake()
	}
	if p.maxRate > 0 && p.rate >= p.maxRate && p.window >= p.maxWindow {
		p.endEpisode()
		return
	}
	p.applyRate()
}

// endEpisode returns to the configured limits; p.mu is held.
func (p *pacer) endEpisode() {
	p.lift()
	p.applyRate()
	p.wake()
	if p.notify != nil {
		go p.notify()
	}
}

// Pace is an endpoint's pacing on this replica, for status and metrics.
type Pace struct {
	// Throttled is set during an episode; the rest describes it.
	Throttled bool
	// RequestsPerSecond is the current rate limit (0: none).
	RequestsPerSecond float64
	MaxInFlight       int
	// Reason is the last signal: 429, 503 or Timeout.
	Reason      string
	Since       time.Time
	PausedUntil time.Time
}

func (p *pacer) state() Pace {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.throttled {
		return Pace{}
	}
	out := Pace{Throttled: true, RequestsPerSecond: math.Round(p.rate*10) / 10, MaxInFlight: p.window,
		Reason: p.reason, Since: p.since}
	if p.pausedUntil.After(p.now()) {
		out.PausedUntil = p.pausedUntil
	}
	return out
}
