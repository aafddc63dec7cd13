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
		return false, b.openedAt.Add(b.cooldown)
	}
	return true, time.Time{}
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
		b.state, b.failures = breakerClosed, 0
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

// State is the breaker's state now, for the event log and metrics.
func (b *breaker) State() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state.String()
}
