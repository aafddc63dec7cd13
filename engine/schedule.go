package engine

import (
	"container/heap"
	"time"
)

// The schedule: the engine holds no timer, and no record, per waiting
// delivery. A retrying delivery whose outcome is recorded is let go; its
// next attempt time is in its event DB, in the index deliveries_open. What
// the engine keeps is, per webhook, the earliest time it knows one of that
// webhook's deliveries comes due (one entry of a min-heap), and ONE timer,
// for the earliest of all. When a webhook comes due, the reader (scan.go)
// reads its due deliveries back in pages and then asks its event DB, in one
// indexed query, when the next one comes due. So memory grows with the
// number of webhooks, not with the backlog, and nothing wakes while nothing
// is due.
//
// An entry may be early (the delivery it was set for was cancelled, or
// went with an earlier read): the reader then finds nothing due, and sets
// the entry from the event DB. It is never late: whatever lets go of a
// delivery that is not yet done tells the schedule when it comes due
// (dueAt), after its event DB says so.

// dueEntry is one webhook's place in the schedule.
type dueEntry struct {
	webhookID string
	at        time.Time // zero: due now
	index     int       // in dueHeap
}

// dueHeap orders the webhooks' entries by due time (container/heap).
type dueHeap []*dueEntry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *dueHeap) Push(x any) {
	entry := x.(*dueEntry)
	entry.index = len(*h)
	*h = append(*h, entry)
}
func (h *dueHeap) Pop() any {
	old := *h
	entry := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return entry
}

// dueAt tells the schedule that a delivery of webhookID comes due at at (a
// zero at: now). The webhook's entry keeps the earliest time it is told.
func (e *Engine) dueAt(webhookID string, at time.Time) {
	e.scanMu.Lock()
	defer e.scanMu.Unlock()
	if e.stopped() {
		return
	}
	if entry := e.due[webhookID]; entry != nil {
		if at.Before(entry.at) {
			entry.at = at
			heap.Fix(&e.dueOrder, entry.index)
		}
	} else {
		entry = &dueEntry{webhookID: webhookID, at: at}
		heap.Push(&e.dueOrder, entry)
		e.due[webhookID] = entry
	}
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
	if len(e.dueOrder) == 0 {
		if e.dueTimer != nil {
			e.dueTimer.Stop()
			e.dueTimerAt = time.Time{}
		}
		return
	}
	next := e.dueOrder[0].at
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
	if e.stopped() || len(e.dueOrder) == 0 || e.dueOrder[0].at.After(time.Now()) {
		e.scanning = false
		e.wakeLocked()
		return "", false, false
	}
	entry := heap.Pop(&e.dueOrder).(*dueEntry)
	delete(e.due, entry.webhookID)
	recovery = e.recovering[entry.webhookID]
	delete(e.recovering, entry.webhookID)
	return entry.webhookID, recovery, true
}

// refreshDue sets a webhook's entry from its event DB, when it waits for a
// time to come: after a cancel, the time it waited for may be gone. An entry
// due now is left to the reader, which sets it once it has read.
func (e *Engine) refreshDue(webhookID string, next func() (time.Time, bool, error)) {
	e.scanMu.Lock()
	entry := e.due[webhookID]
	if entry == nil || !entry.at.After(time.Now()) {
		e.scanMu.Unlock()
		return
	}
	// Taken out while the event DB is asked: a delivery let go meanwhile
	// makes a new entry, and the two are merged (dueAt keeps the earliest).
	heap.Remove(&e.dueOrder, entry.index)
	delete(e.due, webhookID)
	e.wakeLocked()
	e.scanMu.Unlock()
	at, ok, err := next()
	switch {
	case err != nil:
		e.dueAt(webhookID, entry.at) // as it was
	case ok:
		e.dueAt(webhookID, at)
	}
}

// stopSchedule ends the schedule at a stop, and says how many webhooks it
// was waiting on. Called with scanMu held.
func (e *Engine) stopScheduleLocked() int {
	n := len(e.dueOrder)
	if e.dueTimer != nil {
		e.dueTimer.Stop()
	}
	e.dueOrder, e.due = nil, make(map[string]*dueEntry)
	return n
}

// webhooksWaiting is the number of webhooks the schedule holds a due time
// for: those waiting for a retry time to come, and those due now that the
// reader has yet to read.
func (e *Engine) webhooksWaiting() int {
	e.scanMu.Lock()
	defer e.scanMu.Unlock()
	return len(e.dueOrder)
}
