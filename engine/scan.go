package engine

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/storage"
)

// The reader takes in hand the work an event DB holds that the engine does
// not: the deliveries of a webhook that came due (schedule.go), at start
// (recovery), and after a full channel or FIFO made the engine let go of
// one. It is triggered, never periodic: one goroutine, started when a
// webhook comes due, which ends when none is.

// duePage is how many due deliveries the reader reads at a time: what it
// holds in memory, whatever the backlog.
const duePage = 256

// wantScan makes webhooks due now (schedule.go): their event DBs hold work
// not in hand.
func (e *Engine) wantScan(webhookIDs ...string) { e.dueNow(webhookIDs...) }

func (e *Engine) scan() {
	defer e.workers.Done()
	for {
		id, recovery, ok := e.nextDue()
		if !ok {
			return
		}
		found, next, waiting := e.readDue(id, recovery)
		if recovery {
			e.noteRecovered(found)
		}
		if waiting {
			e.dueAt(id, next)
		}
	}
}

// readDue takes in hand every due delivery of one event DB that the engine
// does not hold already, page by page; sending into the full retry queue
// blocks this goroutine only, until a worker makes room. It returns when the
// next delivery of the webhook comes due (waiting false: none does). The
// start-up read (recovery) first counts the attempts that were in flight
// when the previous process died. Deliveries to a paused target are left
// where they are: the target's resumption makes its webhook due
// (TargetResumed).
func (e *Engine) readDue(webhookID string, recovery bool) (found scanCounts, next time.Time, waiting bool) {
	if !e.webhookLive(webhookID) || !e.events.Exists(webhookID) {
		return found, next, false // no file, no event: nothing to find (and nothing to create)
	}
	ctx := context.Background()
	now := time.Now()
	snap := e.snapshot.Load()
	paused := func(targetID string) bool {
		target, ok := snap.Target(webhookID, targetID)
		return ok && target.Paused
	}
	fail := func(doing string, err error) (scanCounts, time.Time, bool) {
		// Read again after a wait that grows while the fault lasts, as a
		// delivery's own storage faults do; logged ever less often.
		f, logIt := e.noteFault(&e.readFaults, webhookID, now)
		if logIt {
			e.log().Error(doing, zap.String("webhook", webhookID), zap.Int("failures", f.failures),
				zap.Duration("retry_in", f.delay), zap.Error(err))
		}
		return found, now.Add(f.delay), true
	}
	if recovery {
		waiting, err := e.countWaiting(ctx, webhookID, now, snap)
		if err != nil {
			return fail("counting retrying deliveries", err)
		}
		n, wereWaiting, err := e.recoverInterrupted(ctx, webhookID, now, paused)
		if err != nil {
			return fail("reading interrupted attempts", err)
		}
		// A delivery is counted once: an interrupted attempt counted is
		// not also a delivery waiting for its time.
		found.interrupted, found.onTimers = n, waiting-wereWaiting
	}
	// Deliveries to a target whose circuit breaker holds every attempt are
	// left in their event DB, untouched, until it lets a probe through:
	// taken in hand, each would only be put off again, a write apiece, for
	// as long as the target is down.
	var heldUntil time.Time // the earliest a breaker that held some lets go
	noteHeld := func(until time.Time) {
		if heldUntil.IsZero() || until.Before(heldUntil) {
			heldUntil = until
		}
	}
	// The deliveries of ordered targets go from the heads of their lines,
	// checked once the walk is done (ordered.go).
	lined := orderedTargets(snap, webhookID)
	var cursor storage.DueCursor
	for !cursor.Done() {
		if until, all := e.allTargetsHeld(webhookID, snap); all {
			noteHeld(until) // the rest of the walk could only skip
			break
		}
		var page []storage.Delivery
		err := e.events.With(ctx, webhookID, func(db *storage.WebhookDB) error {
			var err error
			page, err = db.DueDeliveries(ctx, now, &cursor, duePage, lined...)
			return err
		})
		if err != nil {
			return fail("reading due deliveries", err)
		}
		// The event DB is not held while the page waits for room.
		for _, d := range page {
			if paused(d.TargetID) {
				continue
			}
			if until, held := e.breakerHolds(d.TargetID, time.Now()); held {
				noteHeld(until)
				continue
			}
			if _, inHand := e.owned.LoadOrStore(d.ID, struct{}{}); inHand {
				continue
			}
			select {
			case e.retries <- deliveryRef{webhookID: webhookID, deliveryID: d.ID}:
				found.runNow++
			case <-e.stopping:
				e.release(d.ID)
				return found, next, false
			}
		}
	}
	e.checkLines(webhookID, lined)
	// Those due by now are read (or in hand, or paused): the next is later.
	err := e.events.With(ctx, webhookID, func(db *storage.WebhookDB) error {
		var err error
		next, waiting, err = db.NextRetryAt(ctx, now)
		return err
	})
	if err != nil {
		return fail("reading the next retry time", err)
	}
	if !heldUntil.IsZero() && (!waiting || heldUntil.Before(next)) {
		next, waiting = heldUntil, true
	}
	if _, ok := e.readFaults.LoadAndDelete(webhookID); ok {
		e.log().Info("storage works again for a webhook's due deliveries", zap.String("webhook", webhookID))
	}
	return found, next, waiting
}

// recoverInterrupted counts, at start, the attempts the previous process
// died during (interrupted.go): the marked open deliveries, few (at most
// one per worker of that process), read one by one. wereWaiting are those
// counted that were retrying and not due at now.
func (e *Engine) recoverInterrupted(ctx context.Context, webhookID string, now time.Time, paused func(string) bool) (counted, wereWaiting int, err error) {
	type marked struct {
		d storage.Delivery
		a storage.InterruptedAttempt
	}
	var open []marked
	err = e.events.With(ctx, webhookID, func(db *storage.WebhookDB) error {
		// An attempt of this process may have marked a delivery already
		// (one notified since Start): it is in hand, and the record of an
		// interrupted attempt is conditional on the very mark read here,
		// so it is never counted for one.
		marks, err := db.InterruptedAttempts(ctx)
		if err != nil {
			return err
		}
		for _, a := range marks {
			d, err := db.Delivery(ctx, a.DeliveryID)
			if err != nil {
				return err
			}
			open = append(open, marked{d, a})
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	for _, m := range open {
		if paused(m.d.TargetID) {
			continue
		}
		if _, inHand := e.owned.LoadOrStore(m.d.ID, struct{}{}); inHand {
			continue
		}
		if e.countInterrupted(webhookID, m.d, m.a) {
			counted++
			if m.d.Status == storage.DeliveryRetrying && m.d.NextAttemptAt.After(now) {
				wereWaiting++
			}
			continue
		}
		// Handled as any open delivery: the due read that follows takes
		// it if it is due.
		e.release(m.d.ID)
	}
	return counted, wereWaiting, nil
}

// countWaiting counts, for the start-up report, the retrying deliveries of
// a webhook that wait for their time (those of paused targets aside).
func (e *Engine) countWaiting(ctx context.Context, webhookID string, now time.Time, snap *storage.Snapshot) (n int, err error) {
	err = e.events.With(ctx, webhookID, func(db *storage.WebhookDB) error {
		if n, err = db.CountRetryingAfter(ctx, now, ""); err != nil {
			return err
		}
		w, ok := snap.Webhook(webhookID)
		if !ok {
			return nil
		}
		for _, t := range w.Targets {
			if t.Paused {
				p, err := db.CountRetryingAfter(ctx, now, t.ID)
				if err != nil {
					return err
				}
				n -= p
			}
		}
		return nil
	})
	return n, err
}

// breakerHolds reports whether the circuit breaker of a target holds every
// attempt at now, and until when.
func (e *Engine) breakerHolds(targetID string, now time.Time) (until time.Time, held bool) {
	e.breakersMu.Lock()
	b := e.breakers[targetID]
	e.breakersMu.Unlock()
	if b == nil {
		return time.Time{}, false
	}
	return b.blockedUntil(now)
}

// allTargetsHeld reports whether no delivery of a webhook can go now: each
// of its targets is paused or held by its circuit breaker, at least one of
// them held; until is the earliest such a breaker lets a probe through. (A
// delivery to a target gone from the configuration then waits for it too:
// late, not lost.)
func (e *Engine) allTargetsHeld(webhookID string, snap *storage.Snapshot) (until time.Time, all bool) {
	w, ok := snap.Webhook(webhookID)
	if !ok {
		return time.Time{}, false
	}
	now := time.Now()
	for _, t := range w.Targets {
		if t.Paused {
			continue
		}
		u, held := e.breakerHolds(t.ID, now)
		if !held {
			return time.Time{}, false
		}
		if until.IsZero() || u.Before(until) {
			until = u
		}
	}
	return until, !until.IsZero()
}
