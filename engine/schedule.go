package engine

import "time"

// The schedule: the engine holds no timer, and no record, per waiting
// delivery. A retrying delivery whose outcome is recorded is let go; its
// next attempt time is in its event DB, in the index deliveries_open. What
// the engine keeps is, per webhook, the earliest time it knows one of that
// webhook's deliveries comes due (one entry of a duequeue.Queue, a keyed
// min-heap), and ONE timer, for the earliest of all. When a webhook comes
// due, the reader (scan.go) reads its due deliveries back in pages and then
// asks its event DB, in one indexed query, when the next one comes due. So
// memory grows with the number of webhooks, not with the backlog, and
// nothing wakes while nothing is due.
//
// An entry may be early (the delivery it was set for was cancelled, or
// went with an earlier read): the reader then finds nothing due, and sets
// the entry from the event DB. It is never late: whatever lets go of a
// delivery that is not yet done tells the schedule when it comes due
// (dueAt), after its event DB says so.

// dueAt tells the schedule that a delivery of webhookID comes due at at (a
// zero at: now). The webhook's entry keeps the earliest time it is told.
func (e *Engine) dueAt(webhookID string, at time.Time) {
	e.scanMu.Lock()
	defer e.scanMu.Unlock()
	if e.stopped() {
		return
	}
	e.due.SetEarlier(webhookID, at)
	e.wakeLocked()
}

// dueNow makes webhooks due now: their event DBs hold work that is not in
// hand (a delivery let go because a channel or a target's FIFO was full, a
// target resumed, the start), which the reader takes.
func (e *Engine) dueNow(webhookIDs ...string) {
	for _, id := range webhookIDs {
		e.dueAt(id, time.Time{})
	}
}

// wakeLocked starts the reader if a webhook is due, or sets the one timer
// for the earliest entry. A reader already running looks at the schedule
// again before it ends. Called with scanMu held.
func (e *Engine) wakeLocked() {
	if e.scanning || e.stopped() {
		return
	}
	_, next, ok := e.due.Peek()
	if !ok {
		if e.dueTimer != nil {
			e.dueTimer.Stop()
			e.dueTimerAt = time.Time{}
		}
		return
	}
	wait := time.Until(next)
	if wait <= 0 {
		e.scanning = true
		// Stop waits for the reader too, so that no event DB is used
		// after Stop returns.
		e.workers.Add(1)
		go e.scan()
		return
	}
	if next.Equal(e.dueTimerAt) {
		return // set for it already
	}
	e.dueTimerAt = next
	if e.dueTimer == nil {
		e.dueTimer = time.AfterFunc(wait, e.dueTimerFired)
		return
	}
	e.dueTimer.Reset(wait)
}

// dueTimerFired is the one timer's work: start the reader for what came due.
func (e *Engine) dueTimerFired() {
	e.scanMu.Lock()
	defer e.scanMu.Unlock()
	e.dueTimerAt = time.Time{}
	e.wakeLocked()
}

// nextDue takes the entry of a webhook that is due now, if one is, for the
// reader; and whether the start-up read of that webhook is still to come.
// When none is due it ends the reader (the timer is set for the next).
func (e *Engine) nextDue() (webhookID string, recovery, ok bool) {
	e.scanMu.Lock()
	defer e.scanMu.Unlock()
	if !e.stopped() {
		webhookID, _, ok = e.due.PopDue(time.Now())
	}
	if !ok {
		e.scanning = false
		e.wakeLocked()
		return "", false, false
	}
	recovery = e.recovering[webhookID]
	delete(e.recovering, webhookID)
	return webhookID, recovery, true
}

// refreshDue sets a webhook's entry from its event DB, when it waits for a
// time to come: after a cancel, the time it waited for may be gone. An entry
// due now is left to the reader, which sets it once it has read.
func (e *Engine) refreshDue(webhookID string, next func() (time.Time, bool, error)) {
	e.scanMu.Lock()
	was, ok := e.due.At(webhookID)
	if !ok || !was.After(time.Now()) {
		e.scanMu.Unlock()
		return
	}
	// Taken out while the event DB is asked: a delivery let go meanwhile
	// makes a new entry, and the two are merged (dueAt keeps the earliest).
	e.due.Remove(webhookID)
	e.wakeLocked()
	e.scanMu.Unlock()
	at, ok, err := next()
	switch {
	case err != nil:
		e.dueAt(webhookID, was) // as it was
	case ok:
		e.dueAt(webhookID, at)
	}
}

// stopSchedule ends the schedule at a stop, and says how many webhooks it
// was waiting on. Called with scanMu held.
func (e *Engine) stopScheduleLocked() int {
	n := e.due.Len()
	if e.dueTimer != nil {
		e.dueTimer.Stop()
	}
	e.due.Clear()
	return n
}

// webhooksWaiting is the number of webhooks waiting for a retry time to
// come. Those due now, which the reader has yet to read, are not counted.
func (e *Engine) webhooksWaiting() int {
	now := time.Now()
	e.scanMu.Lock()
	defer e.scanMu.Unlock()
	// A webhook due now is work under way (the reader takes it next), not
	// a wait: right after Start every webhook is, until the start-up read.
	return e.due.CountAfter(now)
}
