package engine

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/storage"
)

// Ordered targets (storage.TargetOptions.Ordered) take their deliveries one
// at a time, in the order they were written. Their deliveries are not taken
// in hand as they are notified or come due: each target has a line, and the
// engine holds at most its head, the first open delivery of the target in
// its event DB (storage.WebhookDB.LineHead). When the head is done with
// (delivered, failed, cancelled), the line is checked again and the next
// one goes; when it waits for a retry (or for its target's rate, or an
// open circuit breaker), the schedule wakes its webhook at that time and
// the reader checks the line. So a failing head holds the rest back until
// it succeeds or gives up, and the line's state is in the event DB alone:
// a restart finds the same head.
//
// A line is checked on a worker, never on the goroutine that notifies (an
// ingest) or reads (the reader): a check reads the event DB.

// line is what the engine keeps of one ordered target's line.
type line struct {
	webhookID string
	// head is the delivery in hand ("" when none): the only one of the
	// target the engine holds, queued, in flight or waiting out a storage
	// fault. Its end checks the line.
	head string
	// waiting: the head waits in its event DB for a time the schedule
	// knows. A delivery joining the line then changes nothing: it is
	// behind the head.
	waiting bool
	// checking: a check is queued or running; again: a delivery joined
	// meanwhile, so a check that found the line empty looks once more.
	checking, again bool
}

// lines holds the lines of the ordered targets, by target id.
type lines struct {
	mu     sync.Mutex
	lines  map[string]*line
	headOf map[string]string // delivery id of a head in hand -> its target id
	// heads is len(headOf), read without mu: every delivery let go asks
	// whether it was a head (letGo), and without ordered targets none is.
	// A head is added before it is attempted, on the goroutine that
	// attempts it, so its own letting go always sees it.
	heads atomic.Int64
}

func newLines() *lines {
	return &lines{lines: make(map[string]*line), headOf: make(map[string]string)}
}

// get returns the line of targetID, a target of webhookID, made if need
// be. Called with mu held.
func (ls *lines) get(webhookID, targetID string) *line {
	l := ls.lines[targetID]
	if l == nil {
		l = &line{webhookID: webhookID}
		ls.lines[targetID] = l
	}
	return l
}

// letGo ends the hold of a head, if deliveryID is one: its line holds
// nothing now. It returns the head's target ("" if it was none), and
// whether its line now waits for a time (wait).
func (ls *lines) letGo(deliveryID string, wait bool) (targetID string) {
	if ls.heads.Load() == 0 {
		return ""
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	targetID, ok := ls.headOf[deliveryID]
	if !ok {
		return ""
	}
	delete(ls.headOf, deliveryID)
	ls.heads.Store(int64(len(ls.headOf)))
	if l := ls.lines[targetID]; l != nil && l.head == deliveryID {
		l.head, l.waiting = "", wait
	}
	return targetID
}

// startCheck marks targetID's line as being checked, unless there is no
// need: its head is in hand (its end checks it), a check is under way (it
// looks again), or, unless force, the head waits for its time (the
// schedule has it). It reports whether the caller is to queue the check.
func (ls *lines) startCheck(webhookID, targetID string, force bool) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.get(webhookID, targetID)
	switch {
	case l.head != "":
		return false
	case l.checking:
		l.again = true
		return false
	case l.waiting && !force:
		return false
	}
	l.checking, l.again, l.waiting = true, false, false
	return true
}

// orderedTarget reports whether targetID of webhookID is an ordered http
// target of the configuration in force.
func (e *Engine) orderedTarget(webhookID, targetID string) bool {
	snap := e.snapshot.Load()
	if snap == nil {
		return false
	}
	t, ok := snap.Target(webhookID, targetID)
	return ok && t.Type == storage.TargetHTTP && t.Options.Ordered
}

// orderedTargets lists the ordered http targets of a webhook in snap.
func orderedTargets(snap *storage.Snapshot, webhookID string) []string {
	w, ok := snap.Webhook(webhookID)
	if !ok {
		return nil
	}
	var ids []string
	for _, t := range w.Targets {
		if t.Type == storage.TargetHTTP && t.Options.Ordered {
			ids = append(ids, t.ID)
		}
	}
	return ids
}

// joinedLine tells targetID's line that a delivery joined it (notified at
// ingest or redelivery): an empty line is checked, and the delivery goes if
// it is the head. It never blocks: with the workers' channel full, the
// webhook is read instead.
func (e *Engine) joinedLine(webhookID, targetID string) {
	if e.lines.startCheck(webhookID, targetID, false) {
		e.queueCheck(webhookID, targetID)
	}
}

// queueCheck hands a started check of a line to the workers, or, with their
// channel full, gives it up and makes the webhook due: the reader checks
// the line then.
func (e *Engine) queueCheck(webhookID, targetID string) {
	select {
	case e.retries <- deliveryRef{webhookID: webhookID, line: targetID}:
	default:
		e.endCheck(webhookID, targetID, false)
		e.wantScan(webhookID)
	}
}

// releaseDone lets go of a delivery that is done with (delivered, failed,
// cancelled, found no longer open): if it was the head of a line, the next
// one may go, and the line is checked.
func (e *Engine) releaseDone(webhookID, deliveryID string) {
	targetID := e.lines.letGo(deliveryID, false)
	e.release(deliveryID)
	if targetID != "" && !e.stopped() && e.lines.startCheck(webhookID, targetID, false) {
		e.queueCheck(webhookID, targetID)
	}
}

// checkLines checks the lines of a webhook's ordered targets, from the
// reader: their heads that are due go (runLine). It checks a line
// whose head waits for its time too: the reader runs when that time came,
// or when something (retry now, a cancel, a resume) may have changed it.
// Sending blocks the reader only, until a worker makes room.
func (e *Engine) checkLines(webhookID string, targetIDs []string) {
	for _, id := range targetIDs {
		if !e.lines.startCheck(webhookID, id, true) {
			continue
		}
		select {
		case e.retries <- deliveryRef{webhookID: webhookID, line: id}:
		case <-e.stopping:
			e.endCheck(webhookID, id, false)
			return
		}
	}
}

// endCheck ends a check that leaves nothing in hand; wait says the head
// waits for a time the schedule knows.
func (e *Engine) endCheck(webhookID, targetID string, wait bool) {
	e.lines.mu.Lock()
	defer e.lines.mu.Unlock()
	l := e.lines.get(webhookID, targetID)
	l.checking, l.waiting = false, wait
}

// runLine checks targetID's line on a worker: it reads the head and
// attempts it if it is due; else the line waits for the head's time, or
// for something to join it. It returns the parked delivery to run next, as
// runRef.
func (e *Engine) runLine(webhookID, targetID string) *deliveryRef {
	ctx := context.Background()
	for {
		e.lines.mu.Lock()
		e.lines.get(webhookID, targetID).again = false
		e.lines.mu.Unlock()
		now := time.Now()
		snap := e.snapshot.Load()
		target, ok := storage.Target{}, false
		if snap != nil {
			target, ok = snap.Target(webhookID, targetID)
		}
		switch {
		case !ok:
			e.dropLine(targetID) // the target or its webhook is gone
			return nil
		case e.stopped() || e.recoveryToCome(webhookID):
			// Stopping; or the start-up read of the webhook, which checks
			// the line, is still to come.
			e.endCheck(webhookID, targetID, false)
			return nil
		case target.Type != storage.TargetHTTP || !target.Options.Ordered:
			// No longer ordered: its deliveries go as they come due.
			e.dropLine(targetID)
			e.wantScan(webhookID)
			return nil
		case target.Paused:
			e.endCheck(webhookID, targetID, false) // TargetResumed reads the webhook
			return nil
		}
		if until, held := e.breakerHolds(targetID, now); held {
			e.endCheck(webhookID, targetID, true)
			e.dueAt(webhookID, until)
			return nil
		}
		var (
			head  storage.Delivery
			found bool
		)
		err := e.events.With(ctx, webhookID, func(db *storage.WebhookDB) error {
			var err error
			head, found, err = db.LineHead(ctx, targetID)
			return err
		})
		if err != nil {
			// Read again later, as a webhook's due deliveries are.
			f, logIt := e.noteFault(&e.readFaults, webhookID, now)
			if logIt {
				e.log().Error("reading the head of an ordered target's line", zap.String("webhook", webhookID),
					zap.String("target", target.Name), zap.Int("failures", f.failures),
					zap.Duration("retry_in", f.delay), zap.Error(err))
			}
			e.endCheck(webhookID, targetID, true)
			e.dueAt(webhookID, now.Add(f.delay))
			return nil
		}
		if !found {
			e.lines.mu.Lock()
			l := e.lines.get(webhookID, targetID)
			if l.again {
				e.lines.mu.Unlock()
				continue // a delivery joined while the line was read
			}
			l.checking = false
			e.lines.mu.Unlock()
			return nil
		}
		if head.Status == storage.DeliveryRetrying && head.NextAttemptAt.After(now) {
			e.endCheck(webhookID, targetID, true)
			e.dueAt(webhookID, head.NextAttemptAt)
			return nil
		}
		_, inHand := e.owned.LoadOrStore(head.ID, struct{}{})
		e.lines.mu.Lock()
		l := e.lines.get(webhookID, targetID)
		l.head, l.checking, l.waiting = head.ID, false, false
		e.lines.headOf[head.ID] = targetID
		e.lines.heads.Store(int64(len(e.lines.headOf)))
		e.lines.mu.Unlock()
		if inHand {
			// Taken in hand before the target was ordered (or by a
			// storage fault's wait): its end checks the line.
			return nil
		}
		return e.runRef(deliveryRef{webhookID: webhookID, deliveryID: head.ID})
	}
}

// dropLine forgets the line of a target that is no longer ordered; a head
// in hand goes on as any delivery.
func (e *Engine) dropLine(targetID string) {
	e.lines.mu.Lock()
	defer e.lines.mu.Unlock()
	if l := e.lines.lines[targetID]; l != nil {
		delete(e.lines.headOf, l.head)
		e.lines.heads.Store(int64(len(e.lines.headOf)))
		delete(e.lines.lines, targetID)
	}
}

// recoveryToCome reports whether the start-up read of a webhook is still to
// come: it alone counts the attempts the previous process died during, so
// no head of its lines goes before it.
func (e *Engine) recoveryToCome(webhookID string) bool {
	e.scanMu.Lock()
	defer e.scanMu.Unlock()
	return e.recovering[webhookID]
}

// linesUnordered makes due the webhooks of lines whose targets a new
// configuration no longer orders (or removed): their deliveries that
// waited behind a head go as they come due, not when the head's wait ends.
// A line with a head in hand, or a check under way, is dropped by its
// check (runLine).
func (e *Engine) linesUnordered(snap *storage.Snapshot) {
	var due []string
	e.lines.mu.Lock()
	for id, l := range e.lines.lines {
		if t, ok := snap.Target(l.webhookID, id); ok && t.Type == storage.TargetHTTP && t.Options.Ordered {
			continue
		}
		due = append(due, l.webhookID)
		if l.head == "" && !l.checking {
			delete(e.lines.lines, id)
		}
	}
	e.lines.mu.Unlock()
	e.wantScan(due...)
}

// Line is where an ordered target's line stands, for the API and the UI:
// its head and how many open deliveries it has. ok is false when the
// target is not ordered or its line is empty.
func (e *Engine) Line(ctx context.Context, webhookID, targetID string) (l storage.Line, ok bool, err error) {
	if !e.orderedTarget(webhookID, targetID) || !e.events.Exists(webhookID) {
		return storage.Line{}, false, nil
	}
	err = e.events.With(ctx, webhookID, func(db *storage.WebhookDB) error {
		l, ok, err = db.Line(ctx, targetID)
		return err
	})
	return l, ok, err
}
