package engine

import (
	"sync"
	"time"
)

// Default circuit breaker settings of an http target.
const (
	DefaultBreakerThreshold = 5
	DefaultBreakerCooldown  = 30 * time.Second
)

type breakerState int

const (
	breakerClosed   breakerState = iota // attempts go through
	breakerOpen                         // attempts are held until the cooldown ends
	breakerHalfOpen                     // one probe is in flight
)

func (s breakerState) String() string {
	return [...]string{"closed", "open", "half-open"}[s]
}

// breaker stops hammering a target that is down: after threshold failures in
// a row it opens, and holds attempts until cooldown has passed; then one
// probe goes through, and its outcome closes or reopens it. A threshold of 0
// turns it off.
type breaker struct {
	threshold int
	cooldown  time.Duration

	mu       sync.Mutex
	state    breakerState
	failures int
	openedAt time.Time // when it opened, or when the probe went out
	// holds are the times allow put attempts off to (retryAt) that may be
	// still to come: the deliveries held until them go when the breaker
	// closes. A few at most: each is a cooldown after the one before.
	holds []time.Time
}

// allow reports whether an attempt may go now. When it may not, retryAt is
// when the breaker lets a probe through.
func (b *breaker) allow(now time.Time) (ok bool, retryAt time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case breakerOpen, breakerHalfOpen:
		// A probe that never reported (its attempt was cut short) does not
		// keep the breaker half-open for ever: after a cooldown, probe again.
		if now.Sub(b.openedAt) >= b.cooldown {
			b.state, b.openedAt = breakerHalfOpen, now
			return true, time.Time{}
		}
		retryAt = b.openedAt.Add(b.cooldown)
		b.noteHold(now, retryAt)
		return false, retryAt
	}
	return true, time.Time{}
}

// noteHold remembers a time attempts were put off to, and forgets those
// past, whose deliveries are due already.
func (b *breaker) noteHold(now, retryAt time.Time) {
	kept := b.holds[:0]
	for _, at := range b.holds {
		if at.After(now) && !at.Equal(retryAt) {
			kept = append(kept, at)
		}
	}
	b.holds = append(kept, retryAt)
}

// breakerChange is what an outcome did to a breaker: opened it (from closed,
// or by a failed probe), or closed it; failures is the run of failures, and
// retryAt when an opened breaker lets a probe through.
type breakerChange struct {
	// opened: closed -> open; probeFailed: a probe failed, the breaker
	// stays open for another cooldown (half-open -> open). Only opened is
	// news for alerts: a target that stays down is told once, not once per
	// cooldown.
	opened, probeFailed, closed bool
	failures                    int
	retryAt                     time.Time
	// heldUntil, when it closed, are the times it put attempts off to that
	// are still to come: their deliveries are to go now.
	heldUntil []time.Time
}

// record takes the outcome of an attempt that allow let through, and
// reports whether it opened or closed the breaker. A failure that ends
// while the breaker is open already (an attempt let through before it
// opened) holds it open longer, and opens nothing.
func (b *breaker) record(success bool, now time.Time) (c breakerChange) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if success {
		c.closed = b.state != breakerClosed
		if c.closed {
			for _, at := range b.holds {
				if at.After(now) {
					c.heldUntil = append(c.heldUntil, at)
				}
			}
		}
		b.state, b.failures, b.holds = breakerClosed, 0, nil
		return c
	}
	b.failures++
	c.failures = b.failures
	if b.state == breakerHalfOpen || (b.threshold > 0 && b.failures >= b.threshold) {
		c.opened = b.state == breakerClosed
		c.probeFailed = b.state == breakerHalfOpen
		b.state, b.openedAt = breakerOpen, now
		c.retryAt = now.Add(b.cooldown)
	}
	return c
}

// blockedUntil reports whether the breaker holds every attempt at now (open
// within its cooldown, or half-open with its probe out), and until when.
func (b *breaker) blockedUntil(now time.Time) (until time.Time, blocked bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == breakerClosed {
		return time.Time{}, false
	}
	until = b.openedAt.Add(b.cooldown)
	return until, now.Before(until)
}

// State is the breaker's state now, for the event log and metrics.
func (b *breaker) State() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state.String()
}
