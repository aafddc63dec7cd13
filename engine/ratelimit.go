package engine

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// targetRates paces the attempts of each http target: its rate_limit (a
// token bucket) and the slow-down its own 429s and Retry-Afters ask for. A
// delivery that may not go yet is not kept in memory: it is put off in its
// event DB (holdForRate) and the schedule wakes it when its turn is due, so
// that a backlog of any size behind a slow target costs no memory.
type targetRates struct {
	mu      sync.Mutex
	targets map[string]*targetRate // target id -> its pace
}

// targetRate is the pace of one target.
type targetRate struct {
	// events and window are the rate_limit the bucket was made for (0:
	// none); a change of the target's configuration starts a new bucket.
	events int
	window time.Duration
	tokens float64   // in the bucket at last, at most events
	last   time.Time // when tokens was counted
	// promised is the latest turn handed to a put-off delivery: each next
	// one is given the turn after it, so that those put off come back one
	// token apart instead of all at once (each only to be put off again).
	promised time.Time
	// slowUntil is when the target's last 429 (or 503 with Retry-After)
	// lets deliveries go again.
	slowUntil time.Time
}

func newTargetRates() *targetRates {
	return &targetRates{targets: make(map[string]*targetRate)}
}

// take asks for a turn of targetID, whose rate limit is r (nil: none), at
// now. ok: go now (a token is spent). Else at is when to come back.
func (rs *targetRates) take(targetID string, r *storage.RateLimit, now time.Time) (ok bool, at time.Time) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	p := rs.targets[targetID]
	events, window := 0, time.Duration(0)
	if r != nil && r.Events > 0 && r.Window > 0 {
		events, window = r.Events, time.Duration(r.Window)
	}
	if p == nil {
		if events == 0 {
			return true, time.Time{} // neither limited nor slowed: nothing to keep
		}
		p = &targetRate{}
		rs.targets[targetID] = p
	}
	if p.events != events || p.window != window {
		// New or changed limit: a full bucket, as at a start.
		p.events, p.window = events, window
		p.tokens, p.last, p.promised = float64(events), now, time.Time{}
	}
	var interval time.Duration // between two tokens
	if events > 0 {
		interval = window / time.Duration(events)
		if elapsed := now.Sub(p.last); elapsed > 0 {
			p.tokens = min(float64(events), p.tokens+float64(elapsed)/float64(interval))
		}
		p.last = now
	}
	if now.Before(p.slowUntil) {
		return false, p.turn(p.slowUntil, interval)
	}
	if events == 0 {
		delete(rs.targets, targetID) // the slow-down is over, and no limit
		return true, time.Time{}
	}
	if p.tokens >= 1 {
		p.tokens--
		return true, time.Time{}
	}
	next := now.Add(time.Duration((1 - p.tokens) * float64(interval)))
	return false, p.turn(next, interval)
}

// turn is the time a put-off delivery comes back: from, or one interval
// after the last turn promised if that is later.
func (p *targetRate) turn(from time.Time, interval time.Duration) time.Time {
	if after := p.promised.Add(interval); interval > 0 && after.After(from) {
		from = after
	}
	p.promised = from
	return from
}

// slowDown makes every delivery of targetID wait until until: the target
// said it gets too much (429, or 503 with Retry-After).
func (rs *targetRates) slowDown(targetID string, until time.Time) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	p := rs.targets[targetID]
	if p == nil {
		p = &targetRate{}
		rs.targets[targetID] = p
	}
	if until.After(p.slowUntil) {
		p.slowUntil = until
	}
}

// holdForRate puts off a delivery whose target may not take it yet (its
// rate limit, or a slow-down it asked for) until at, without counting an
// attempt: it waits in its event DB, and the schedule brings it back.
func (e *Engine) holdForRate(t *Task, at time.Time) {
	ctx := context.Background()
	err := e.events.With(ctx, t.WebhookID, func(db *storage.WebhookDB) error {
		return db.Reschedule(ctx, t.DeliveryID, at)
	})
	if errors.Is(err, storage.ErrNotFound) && e.webhookLive(t.WebhookID) {
		e.releaseDone(t.WebhookID, t.DeliveryID) // not open any more (cancelled meanwhile)
		return
	}
	if err != nil {
		e.storageTrouble(t, "putting off a delivery for its target's rate", err)
		return
	}
	e.storageRecovered(t.DeliveryID)
	e.rateHeld.Add(1)
	e.schedule(deliveryRef{webhookID: t.WebhookID, deliveryID: t.DeliveryID}, at)
}
