package storage

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// The applier: it writes the intake's entries into their webhooks' event
// DBs, one webhook at a time, all of a webhook's waiting entries in one
// transaction (up to the batch bounds), without an fsync (see intake.go).

const (
	// applyRetryFirst and applyRetryMax bound the wait before a webhook
	// whose entries could not be applied is tried again.
	applyRetryFirst = 100 * time.Millisecond
	applyRetryMax   = 30 * time.Second

	// coldOpenPause is how many times the CPU of opening a webhook's event
	// DB the applier waits, after an apply that had to open it, before its
	// next apply, while more webhooks wait. See applyReadyUntil.
	coldOpenPause = 3
	// minColdOpen is the shortest cold open paced: one quicker costs the
	// ingest too little to wait for. A file already open is never paced,
	// however long its handle took to get (acquireCold says which it was).
	minColdOpen = 200 * time.Microsecond
)

// applyLoop applies ready webhooks' entries whenever some arrive, until
// stop (Close applies what is left).
func (in *Intake) applyLoop() {
	defer in.loops.Done()
	for {
		select {
		case <-in.wake:
			in.applyReadyUntil(in.stopping, true)
		case <-in.stop:
			return
		}
	}
}

// applyReadyUntil applies the entries of every ready webhook, in the order
// they became ready, until none is or ctx ends.
//
// Paced, after an apply that had to open its webhook's event DB (a cold
// file: load spread over more webhooks than max_open_event_dbs), it waits
// coldOpenPause times that open before the next, while more webhooks wait
// and intake.db is less than half full. Without it, the applier under
// spread load was never idle however cheap an open was: a cheaper open only
// made its round of the webhooks shorter and their batches smaller, and it
// took the CPU that ingest needed (a core of two). Paced, a cold open costs
// at most a quarter of the applier's time; the waiting batches grow until
// each open carries enough events for the applier to keep up, and the
// events themselves are applied at full speed. What it costs is delay, for
// cold webhooks under load only: the engine hears of their deliveries
// later. Reads are not delayed (they apply what they need themselves), nor
// is a file already open.
func (in *Intake) applyReadyUntil(ctx context.Context, paced bool) {
	for ctx.Err() == nil {
		in.mu.Lock()
		if len(in.ready) == 0 {
			in.ready = nil // let a long list go
			in.mu.Unlock()
			return
		}
		id := in.ready[0]
		in.ready = in.ready[1:]
		q := in.queues[id]
		q.inReady = false
		in.mu.Unlock()
		opening, _ := in.applyQueueTimed(id, q)
		if paced && opening >= minColdOpen && in.paceCold() {
			in.pauses.Add(1)
			t := time.NewTimer(coldOpenPause * opening)
			select {
			case <-t.C:
			case <-in.stop:
				t.Stop()
			}
		}
	}
}

// paceCold reports whether the applier may wait after a cold open: more
// webhooks wait, and intake.db is less than half full.
func (in *Intake) paceCold() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.ready) > 0 && in.onDisk < in.opts.Size/2
}

// applyRetrying tries once more, at stop, the webhooks waiting for a retry.
func (in *Intake) applyRetrying() {
	in.mu.Lock()
	var ids []string
	for id, q := range in.queues {
		if q.retry != nil {
			q.retry.Stop()
			q.retry = nil
			ids = append(ids, id)
		}
	}
	in.mu.Unlock()
	for _, id := range ids {
		in.mu.Lock()
		q := in.queues[id]
		in.mu.Unlock()
		_ = in.applyQueue(id, q)
	}
}

// holds reports whether the intake holds events of webhook id not yet
// applied.
func (in *Intake) holds(id string) bool {
	in.mu.Lock()
	q := in.queues[id]
	in.mu.Unlock()
	return q != nil && q.waiting.Load() > 0
}

// flush applies what the intake holds for webhook id, waiting for an apply
// of it under way: once it returns, the event DB holds every event of id
// acknowledged before it was called.
func (in *Intake) flush(id string) error {
	in.mu.Lock()
	q := in.queues[id]
	in.mu.Unlock()
	if q == nil || q.waiting.Load() == 0 {
		return nil
	}
	return in.applyQueue(id, q)
}

// applyQueue takes and applies q's entries, a chunk at a time (loading
// spilled and replayed ones from the intake first). On failure the entries
// not applied go back to the head of q, spilled, and q is tried again
// after a backoff.
func (in *Intake) applyQueue(id string, q *intakeQueue) error {
	_, err := in.applyQueueTimed(id, q)
	return err
}

// applyQueueTimed is applyQueue, and also says how long the event DB took
// to open: 0 when it was open already, however long its handle took to get
// on a busy machine.
func (in *Intake) applyQueueTimed(id string, q *intakeQueue) (opening time.Duration, err error) {
	q.apply.Lock()
	in.mu.Lock()
	b := intakeBacklog{webhookID: id, runs: q.spilled, entries: q.entries}
	q.spilled, q.entries = nil, nil
	in.spilledNow -= refCount(b.runs)
	in.mu.Unlock()
	if b.empty() {
		q.apply.Unlock()
		return 0, nil
	}
	var (
		told  []AppliedEvent
		chunk []*intakeEntry // taken from b and not applied
	)
	ctx := in.events.lifetime()
	start := time.Now()
	cold, err := in.events.withDBCold(ctx, id, func(db *WebhookDB) error {
		opening = time.Since(start)
		for !b.empty() {
			chunk = b.next()
			if err := in.load(ctx, chunk); err != nil {
				return err
			}
			if err := db.applyIntake(chunk); err != nil {
				return err
			}
			for _, e := range chunk {
				if e.targets != nil {
					told = append(told, AppliedEvent{Event: e.ev, Pending: e.rec.pending, Targets: e.targets})
				}
			}
			in.applied(id, q, chunk)
			chunk = nil
		}
		return nil
	})
	if !cold {
		opening = 0 // what it took was waiting for the handle, not opening it
	}
	if errors.Is(err, ErrNotFound) && in.events.isDeleted(id) {
		// The webhook was deleted since: its events went with it.
		for ; len(chunk) > 0 || !b.empty(); chunk = b.next() {
			in.applied(id, q, chunk)
		}
		err = nil
	}
	var failed int64
	if err != nil {
		runs, n, freed := b.spillBack(chunk)
		failed = n
		in.mu.Lock()
		q.spilled = append(runs, q.spilled...)
		in.spilledNow += n
		in.held -= freed
		in.freed()
		q.failing = err
		in.retryLater(id, q)
		in.mu.Unlock()
	}
	q.apply.Unlock()
	if len(told) > 0 && in.opts.Applied != nil {
		in.opts.Applied(id, told)
	}
	if err != nil {
		if in.opts.Trouble != nil {
			in.opts.Trouble(id, int(failed), err)
		}
		return opening, fmt.Errorf("apply %d acknowledged events of webhook %s from the intake: %w", failed, id, err)
	}
	return opening, nil
}

// retryLater makes q ready again after its backoff. Under in.mu.
func (in *Intake) retryLater(id string, q *intakeQueue) {
	if q.retry != nil {
		return
	}
	q.backoff = min(max(2*q.backoff, applyRetryFirst), applyRetryMax)
	q.retry = time.AfterFunc(q.backoff, func() {
		in.mu.Lock()
		q.retry = nil
		if !q.inReady && (len(q.entries) > 0 || len(q.spilled) > 0) {
			q.inReady = true
			in.ready = append(in.ready, id)
		}
		in.mu.Unlock()
		signal(in.wake)
	})
}

// applied records entries as written into webhook id's event DB in this
// sync epoch, and gives back the memory they held.
func (in *Intake) applied(id string, q *intakeQueue, entries []*intakeEntry) {
	var held int64
	in.mu.Lock()
	for _, e := range entries {
		in.appliedNow = append(in.appliedNow, intakeRef{seq: e.seq, size: e.size})
		held += e.held()
	}
	q.backoff, q.failing = 0, nil
	q.waiting.Add(-int64(len(entries)))
	in.dirty[id] = struct{}{}
	in.held -= held
	in.freed()
	due := !in.syncArmed
	in.syncArmed = true
	now := len(in.appliedNow) >= maxSyncEntries
	in.mu.Unlock()
	in.appliedTotal.Add(int64(len(entries)))
	in.unapplied.Add(-int64(len(entries)))
	in.wantSync(due, now)
}

// applyIntake writes entries into this event DB in one transaction,
// committed without an fsync (the intake holds them until a sync round).
// An entry whose event is already here (applied before a crash, replayed
// since) is skipped whole: its deliveries came with it.
func (db *WebhookDB) applyIntake(entries []*intakeEntry) error {
	size := 0
	for _, e := range entries {
		size += len(e.ev.Body)
	}
	return db.commits.submit(&commitRequest{size: size, crashSafe: true, write: func(w *writeTx) error {
		for _, e := range entries {
			if err := w.applyEvent(e); err != nil {
				return fmt.Errorf("event %s: %w", e.ev.ID, err)
			}
		}
		return nil
	}})
}

// applyEvent inserts one intake entry's event and deliveries, unless the
// event is here already.
func (w *writeTx) applyEvent(e *intakeEntry) error {
	res, err := w.exec(sqlApplyEvent, eventArgs(e.ev, e.rec.headers)...)
	if err != nil {
		return fmt.Errorf("insert event: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return err // here already
	}
	if err := w.insertPending(e.ev, e.rec.pending); err != nil {
		return err
	}
	return w.insertKept(e.ev, e.rec.kept)
}

// withDB is With without the intake's flush: the applier's own way in.
func (m *WebhookDBManager) withDB(ctx context.Context, id string, fn func(*WebhookDB) error) error {
	_, err := m.withDBCold(ctx, id, fn)
	return err
}

// withDBCold is withDB that also reports whether the file was cold: not
// open when asked for, so that this call waited for its open.
func (m *WebhookDBManager) withDBCold(ctx context.Context, id string, fn func(*WebhookDB) error) (cold bool, err error) {
	h, cold, err := m.acquireCold(ctx, id)
	if err != nil {
		return cold, err
	}
	defer h.release(m)
	return cold, fn(h.db)
}

// isDeleted reports whether webhook id was deleted while open.
func (m *WebhookDBManager) isDeleted(id string) bool {
	m.lifecycle.RLock()
	defer m.lifecycle.RUnlock()
	return m.deleted[id]
}

// ApplyAll applies every entry the intake holds, waiting for applies under
// way: once it returns, the event DBs hold every event acknowledged before
// it was called. For whoever reads the files themselves (a backup, a test).
func (in *Intake) ApplyAll() error {
	in.mu.Lock()
	ids := make([]string, 0, len(in.queues))
	for id, q := range in.queues {
		if q.waiting.Load() > 0 {
			ids = append(ids, id)
		}
	}
	in.mu.Unlock()
	var errs []error
	for _, id := range ids {
		errs = append(errs, in.flush(id))
	}
	return errors.Join(errs...)
}
