package storage

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
)

// intakeRig is a data directory with a manager and an intake over it.
type intakeRig struct {
	t       *testing.T
	dir     string
	events  *WebhookDBManager
	intake  *Intake
	mu      sync.Mutex
	applied map[string][]AppliedEvent
	trouble []error
}

func newIntakeRig(t *testing.T, dir string, opts IntakeOptions) *intakeRig {
	t.Helper()
	return newIntakeRigOn(t, dir, ManagerOptions{}, opts)
}

// newIntakeRigOn is newIntakeRig with the manager's options.
func newIntakeRigOn(t *testing.T, dir string, mopts ManagerOptions, opts IntakeOptions) *intakeRig {
	t.Helper()
	r := &intakeRig{t: t, dir: dir, applied: map[string][]AppliedEvent{}}
	events, err := NewWebhookDBManager(dir, mopts)
	if err != nil {
		t.Fatal(err)
	}
	r.events = events
	opts.Applied = func(id string, evs []AppliedEvent) {
		r.mu.Lock()
		r.applied[id] = append(r.applied[id], evs...)
		r.mu.Unlock()
	}
	opts.Trouble = func(id string, n int, err error) {
		r.mu.Lock()
		r.trouble = append(r.trouble, err)
		r.mu.Unlock()
	}
	r.intake, err = OpenIntake(context.Background(), dir, SynchronousFull, events, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.close() })
	return r
}

func (r *intakeRig) close() {
	r.t.Helper()
	if err := r.intake.Close(context.Background()); err != nil {
		r.t.Errorf("close the intake: %v", err)
	}
	if err := r.events.CloseAll(context.Background()); err != nil {
		r.t.Errorf("close the event DBs: %v", err)
	}
}

func (r *intakeRig) ingest(webhookID string, body string, targets ...Target) *Event {
	r.t.Helper()
	ev := &Event{EntrypointID: "ep", EntrypointKey: "key", Method: "POST", Path: "/hooks/key", Body: []byte(body)}
	if err := r.intake.Ingest(context.Background(), webhookID, ev, targets); err != nil {
		r.t.Fatalf("ingest into %s: %v", webhookID, err)
	}
	return ev
}

// intakeRows counts the entries intake.db holds, read by a connection of
// its own, as after a crash.
func intakeRows(t *testing.T, dir string) int {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, intakeFileName)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM intake").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func eventCount(t *testing.T, m *WebhookDBManager, id string) int {
	t.Helper()
	var n int
	err := m.With(context.Background(), id, func(db *WebhookDB) error {
		return db.file.reader.QueryRow("SELECT count(*) FROM events").Scan(&n)
	})
	if err != nil {
		t.Fatalf("count events of %s: %v", id, err)
	}
	return n
}

func TestIntakeReadsSeeEveryAcknowledgedEvent(t *testing.T) {
	r := newIntakeRig(t, t.TempDir(), IntakeOptions{})
	wh := uuid.NewString()
	target := Target{ID: uuid.NewString(), Type: TargetHTTP}
	kept := Target{ID: uuid.NewString(), Type: TargetDatabase}
	var ids []string
	for i := range 50 {
		ids = append(ids, r.ingest(wh, fmt.Sprintf(`{"n":%d}`, i), target, kept).ID)
	}
	// With applies what the intake holds for wh before fn reads.
	err := r.events.With(context.Background(), wh, func(db *WebhookDB) error {
		for _, id := range ids {
			ds, err := db.Deliveries(context.Background(), id)
			if err != nil {
				return err
			}
			if len(ds) != 2 {
				return fmt.Errorf("event %s has %d deliveries, want 2", id, len(ds))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The engine hears of each event's pending delivery, with its target,
	// in the order received. It is told after the apply's lock is let go:
	// the last may come just after With's read.
	var told []AppliedEvent
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		r.mu.Lock()
		told = r.applied[wh]
		r.mu.Unlock()
		if len(told) >= len(ids) || time.Now().After(deadline) {
			break
		}
	}
	if len(told) != len(ids) {
		t.Fatalf("Applied told %d events, want %d", len(told), len(ids))
	}
	for i, a := range told {
		if a.Event.ID != ids[i] || len(a.Pending) != 1 || a.Pending[0].TargetID != target.ID || len(a.Targets) != 2 {
			t.Fatalf("Applied event %d: %s with %+v, want %s with one pending delivery to %s", i, a.Event.ID, a.Pending, ids[i], target.ID)
		}
	}
}

// TestIntakeSharesCommitsAcrossWebhooks: events of many webhooks arriving
// at once share the intake's transactions, where each webhook's event DB
// would have taken one (and one fsync) per event.
func TestIntakeSharesCommitsAcrossWebhooks(t *testing.T) {
	r := newIntakeRig(t, t.TempDir(), IntakeOptions{})
	webhooks := make([]string, 200)
	for i := range webhooks {
		webhooks[i] = uuid.NewString()
	}
	var wg sync.WaitGroup
	for _, wh := range webhooks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.ingest(wh, `{}`, Target{ID: uuid.NewString(), Type: TargetDatabase})
		}()
	}
	wg.Wait()
	commits := r.intake.commits.transactions.Load()
	t.Logf("%d events into %d webhooks: %d intake transactions", len(webhooks), len(webhooks), commits)
	if commits >= int64(len(webhooks)) {
		t.Errorf("%d intake transactions for %d events of as many webhooks: no commit was shared", commits, len(webhooks))
	}
	if err := r.intake.ApplyAll(); err != nil {
		t.Fatal(err)
	}
	for _, wh := range webhooks {
		if n := eventCount(t, r.events, wh); n != 1 {
			t.Fatalf("webhook %s holds %d events, want 1", wh, n)
		}
	}
}

// TestIntakeForgetsOnlyWhatIsSynced: a sync round removes from the intake
// the entries applied before it, and only those; Close applies and
// forgets the rest.
func TestIntakeForgetsOnlyWhatIsSynced(t *testing.T) {
	dir := t.TempDir()
	// A sync delay no test waits for: rounds run only when asked.
	r := newIntakeRig(t, dir, IntakeOptions{SyncDelay: time.Hour})
	wh := uuid.NewString()
	for range 10 {
		r.ingest(wh, `{}`)
	}
	if err := r.intake.ApplyAll(); err != nil {
		t.Fatal(err)
	}
	if n := intakeRows(t, dir); n != 10 {
		t.Fatalf("the intake holds %d entries after they were applied, want all 10 until a sync round", n)
	}
	r.intake.syncRound()
	if n := intakeRows(t, dir); n != 0 {
		t.Fatalf("the intake holds %d entries after a sync round, want 0", n)
	}
	// Held from the applier, which would otherwise apply it before the
	// round as it pleases (it did, under -race).
	r.intake.mu.Lock()
	q := r.intake.queues[wh]
	r.intake.mu.Unlock()
	q.apply.Lock()
	r.ingest(wh, `{}`)
	r.intake.syncRound() // closes an epoch in which nothing was applied
	q.apply.Unlock()
	if n := intakeRows(t, dir); n != 1 {
		t.Fatalf("the intake holds %d entries after a round that synced nothing new, want the 1 not applied", n)
	}
	r.close()
	if n := intakeRows(t, dir); n != 0 {
		t.Fatalf("the intake holds %d entries after Close, want 0", n)
	}
	r.intake, _ = OpenIntake(context.Background(), dir, SynchronousFull, r.events, IntakeOptions{})
	if got := r.intake.Replayed(); got.Events != 0 {
		t.Errorf("a reopen after a clean close replayed %+v", got)
	}
	if n := eventCount(t, r.events, wh); n != 11 {
		t.Errorf("%d events in the event DB, want 11", n)
	}
}

// TestIntakeReplaysWhatWasNotApplied: entries left in intake.db (as a kill
// leaves them: acknowledged, some applied, some not) are applied on open,
// once each, and then forgotten.
func TestIntakeReplaysWhatWasNotApplied(t *testing.T) {
	dir := t.TempDir()
	r := newIntakeRig(t, dir, IntakeOptions{SyncDelay: time.Hour})
	wh, other := uuid.NewString(), uuid.NewString()
	target := Target{ID: uuid.NewString(), Type: TargetHTTP}
	for range 5 {
		r.ingest(wh, `{}`, target)
	}
	if err := r.intake.ApplyAll(); err != nil { // applied, not synced: still in the intake
		t.Fatal(err)
	}
	// Entries written but never applied: straight into intake.db, as if the
	// process died between the commit and the apply.
	r.intake.mu.Lock()
	r.intake.closed = true // the applier must not take them
	r.intake.mu.Unlock()
	for i := range 3 {
		ev := &Event{ID: uuid.NewString(), EntrypointID: "ep", EntrypointKey: "k", Method: "POST", Path: "/",
			Headers: map[string][]string{"X-N": {fmt.Sprint(i)}}, Body: []byte("unapplied"), ReceivedAt: time.Now()}
		rec, err := newEventRecord(ev, []Target{target})
		if err != nil {
			t.Fatal(err)
		}
		ds, _ := encodeIntakeDeliveries(rec)
		if _, err := r.intake.file.writer.Exec(sqlInsertIntake, 1000+i, other, ev.ID, ev.EntrypointID, ev.EntrypointKey,
			ev.Method, ev.Path, "", string(rec.headers), ev.Body, "", "", ev.ReceivedAt.UnixNano(), "", string(ds)); err != nil {
			t.Fatal(err)
		}
	}
	// Drop everything without a close: no apply, no sync, no forget.
	r.intake.closed = true
	close(r.intake.stop)
	r.intake.loops.Wait()
	r.events.intake.Store(nil)
	if err := r.intake.file.close(); err != nil {
		t.Fatal(err)
	}
	if n := intakeRows(t, dir); n != 8 {
		t.Fatalf("intake.db holds %d entries, want 8", n)
	}
	again, err := OpenIntake(context.Background(), dir, SynchronousFull, r.events, IntakeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.intake = again
	if got := again.Replayed(); got.Events != 8 || got.Webhooks != 2 {
		t.Errorf("replayed %+v, want 8 events of 2 webhooks", got)
	}
	// The open read no event: they are loaded when applied.
	if f := again.Figures(); f.Held != 8*intakeRefSize || f.Spilled != 8 {
		t.Errorf("%d bytes held and %d entries spilled after the open, want %d and 8: the entries' seqs and sizes only",
			f.Held, f.Spilled, 8*intakeRefSize)
	}
	// The applier leaves them to the reads of their webhooks until
	// ReleaseReplayed: a round of it applies none.
	again.applyReadyUntil(context.Background(), false)
	if f := again.Figures(); f.Unapplied != 8 {
		t.Errorf("%d replayed events unapplied after an applier round before ReleaseReplayed, want 8", f.Unapplied)
	}
	// A read of a webhook applies its replayed events first.
	if n := eventCount(t, r.events, other); n != 3 {
		t.Errorf("%d events of the unapplied webhook on its first read, want 3", n)
	}
	// Released, the applier's own loop takes the rest.
	again.ReleaseReplayed()
	for deadline := time.Now().Add(10 * time.Second); again.Figures().Unapplied != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d replayed events still unapplied 10 s after ReleaseReplayed", again.Figures().Unapplied)
		}
		time.Sleep(5 * time.Millisecond)
	}
	again.syncRound()
	if n := intakeRows(t, dir); n != 0 {
		t.Errorf("intake.db holds %d entries after the replay and a sync round, want 0", n)
	}
	if n := eventCount(t, r.events, wh); n != 5 {
		t.Errorf("%d events of the applied webhook, want 5 (none twice)", n)
	}
	if n := eventCount(t, r.events, other); n != 3 {
		t.Errorf("%d events of the unapplied webhook, want 3", n)
	}
	err = r.events.With(context.Background(), other, func(db *WebhookDB) error {
		open, err := db.OpenDeliveries(context.Background())
		if len(open) != 3 {
			return errors.Join(err, fmt.Errorf("%d open deliveries, want 3 pending", len(open)))
		}
		return err
	})
	if err != nil {
		t.Error(err)
	}
}

// TestIntakeKeepsEventsOfABrokenEventDB: a webhook whose event DB cannot
// be opened keeps its acknowledged events in the intake, takes no more
// (a 503 for the provider), and gets them all once the path is usable;
// other webhooks go on.
func TestIntakeKeepsEventsOfABrokenEventDB(t *testing.T) {
	dir := t.TempDir()
	r := newIntakeRig(t, dir, IntakeOptions{})
	broken, fine := uuid.NewString(), uuid.NewString()
	path, _ := r.events.EventDBPath(broken)
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	first := r.ingest(broken, `{"n":1}`)
	if err := r.intake.ApplyAll(); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("ApplyAll with a directory in the way: %v, want the open's error", err)
	}
	// What it could not apply waits in intake.db alone, holding no memory
	// but its ref (whether the applier's retry has it in hand or not).
	if f := r.intake.Figures(); f.Unapplied != 1 || f.Held != intakeRefSize {
		t.Errorf("figures after the failed apply: %+v, want its 1 entry unapplied, spilled", f)
	}
	err := r.intake.Ingest(context.Background(), broken, &Event{Body: []byte(`{"n":2}`)}, nil)
	if err == nil || !strings.Contains(err.Error(), "cannot be written, 1 acknowledged events wait") {
		t.Fatalf("Ingest into the broken webhook: %v, want a refusal", err)
	}
	r.ingest(fine, `{}`)
	if err := r.intake.flush(fine); err != nil {
		t.Fatalf("another webhook: %v", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := r.intake.ApplyAll(); err != nil {
		t.Fatalf("ApplyAll once the path is free: %v", err)
	}
	var got []string
	err = r.events.With(context.Background(), broken, func(db *WebhookDB) error {
		rows, err := db.file.reader.Query("SELECT id FROM events")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			got = append(got, id)
		}
		return rows.Err()
	})
	if err != nil || len(got) != 1 || got[0] != first.ID {
		t.Fatalf("the repaired event DB holds %v (%v), want only %s", got, err, first.ID)
	}
	r.ingest(broken, `{"n":3}`) // taken again
}

// holdApplier makes the applier wait on webhook blocker's apply, as a slow
// file would: it takes blocker first and waits there, so the entries of
// the webhooks after it stay in the intake. The returned func lets it go.
func (r *intakeRig) holdApplier() (blocker string, let func()) {
	r.t.Helper()
	return r.holdApplierOn(uuid.NewString())
}

// holdApplierOn is holdApplier with the blocker webhook given, whose queue
// must be empty.
func (r *intakeRig) holdApplierOn(blocker string) (string, func()) {
	r.t.Helper()
	q := &intakeQueue{}
	r.intake.mu.Lock()
	r.intake.queues[blocker] = q
	r.intake.mu.Unlock()
	q.apply.Lock()
	r.ingest(blocker, `{}`)
	var once sync.Once
	return blocker, func() { once.Do(q.apply.Unlock) }
}

// spillEvent is the i-th event of TestIntakeSpills…: a 20 KiB body and a
// header, both its own.
func spillEvent(i int) *Event {
	return &Event{EntrypointID: "ep", EntrypointKey: "key", Method: "POST", Path: "/hooks/key",
		Headers: http.Header{"X-N": {fmt.Sprint(i)}}, Body: []byte(fmt.Sprintf("%05d%s", i, strings.Repeat("x", 20<<10)))}
}

// checkSpilledEvents reads every event of sent back through With (which
// applies what the intake holds first) and compares it with what was
// sent: body and headers intact, one delivery each.
func checkSpilledEvents(t *testing.T, m *WebhookDBManager, sent map[string][]*Event) {
	t.Helper()
	for wh, evs := range sent {
		err := m.With(context.Background(), wh, func(db *WebhookDB) error {
			for _, want := range evs {
				got, err := db.Event(context.Background(), want.ID)
				if err != nil {
					return fmt.Errorf("event %s: %w", want.ID, err)
				}
				if !bytes.Equal(got.Body, want.Body) || got.Headers.Get("X-N") != want.Headers.Get("X-N") {
					return fmt.Errorf("event %s came back with a body of %d bytes starting %.5q and X-N %q, want %d bytes starting %.5q and X-N %q",
						want.ID, len(got.Body), got.Body, got.Headers.Get("X-N"), len(want.Body), want.Body, want.Headers.Get("X-N"))
				}
				ds, err := db.Deliveries(context.Background(), want.ID)
				if err != nil || len(ds) != 1 {
					return errors.Join(err, fmt.Errorf("event %s has %d deliveries, want 1", want.ID, len(ds)))
				}
			}
			return nil
		})
		if err != nil {
			t.Errorf("webhook %s: %v", wh, err)
		}
	}
}

// TestIntakeSpillsPastItsMemory: with the applier held up, the intake
// takes 20 times its memory bound of events without an ingest waiting:
// the events of the webhooks the applier reaches last are dropped from
// memory (the memory held never goes over the bound), and read back from
// intake.db when applied, bodies and headers intact, their deliveries
// told to the engine.
func TestIntakeSpillsPastItsMemory(t *testing.T) {
	const memory = 64 << 10
	r := newIntakeRig(t, t.TempDir(), IntakeOptions{Memory: memory})
	_, let := r.holdApplier()
	defer let()
	target := Target{ID: uuid.NewString(), Type: TargetHTTP}
	targets := []Target{target} // one slice for all, as a route's
	sent := map[string][]*Event{}
	webhooks := []string{uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()}
	var size int64
	for i := range 64 {
		wh := webhooks[i%len(webhooks)]
		ev := spillEvent(i)
		// A wait for memory would end with this ctx's error.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := r.intake.Ingest(ctx, wh, ev, targets)
		cancel()
		if err != nil {
			t.Fatalf("ingest %d with the applier held up: %v", i, err)
		}
		sent[wh] = append(sent[wh], ev)
		size += int64(len(ev.Body)) + intakeEntryOverhead
		if f := r.intake.Figures(); f.Held > memory {
			t.Fatalf("after ingest %d: %d bytes held in memory, over the bound of %d", i, f.Held, memory)
		}
	}
	f := r.intake.Figures()
	if f.Unapplied != 65 || f.OnDisk < size || f.Spilled < 60 || f.SpilledTotal != f.Spilled {
		t.Errorf("figures with the applier held up: %+v, want 65 unapplied, at least %d bytes on disk, at least 60 spilled", f, size)
	}
	let()
	checkSpilledEvents(t, r.events, sent)
	// The engine hears of each spilled event's delivery, with its body.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		r.mu.Lock()
		n := 0
		for _, wh := range webhooks {
			n += len(r.applied[wh])
		}
		r.mu.Unlock()
		if n == 64 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Applied told %d events, want 64", n)
		}
	}
	r.mu.Lock()
	for _, wh := range webhooks {
		for i, a := range r.applied[wh] {
			if want := sent[wh][i]; a.Event.ID != want.ID || !bytes.Equal(a.Event.Body, want.Body) ||
				len(a.Pending) != 1 || len(a.Targets) != 1 || a.Targets[0].ID != target.ID {
				t.Errorf("webhook %s, event %d: told %s with %d bytes, %d pending, %d targets; want %s, %d bytes, 1, 1",
					wh, i, a.Event.ID, len(a.Event.Body), len(a.Pending), len(a.Targets), want.ID, len(want.Body))
			}
		}
	}
	r.mu.Unlock()
	if err := r.intake.ApplyAll(); err != nil {
		t.Fatal(err)
	}
	if f := r.intake.Figures(); f.Held != 0 || f.Unapplied != 0 || f.Spilled != 0 {
		t.Errorf("figures once everything is applied: %+v, want nothing held, unapplied or spilled", f)
	}
	r.intake.syncRound()
	if f := r.intake.Figures(); f.OnDisk != 0 || f.Waiting != 0 {
		t.Errorf("figures after a sync round: %+v, want nothing on disk or unsynced", f)
	}
	if n := intakeRows(t, r.dir); n != 0 {
		t.Errorf("intake.db holds %d entries after the sync round, want 0", n)
	}
}

// TestIntakeReplaysSpilledEntriesAfterACrash: events spilled and not yet
// applied when the process dies are in intake.db, and the next open
// applies them, bodies intact.
func TestIntakeReplaysSpilledEntriesAfterACrash(t *testing.T) {
	dir := t.TempDir()
	r := newIntakeRig(t, dir, IntakeOptions{Memory: 64 << 10, SyncDelay: time.Hour})
	blocker, let := r.holdApplier()
	sent := map[string][]*Event{}
	webhooks := []string{uuid.NewString(), uuid.NewString()}
	target := []Target{{ID: uuid.NewString(), Type: TargetHTTP}}
	for i := range 16 {
		wh := webhooks[i%len(webhooks)]
		ev := spillEvent(i)
		if err := r.intake.Ingest(context.Background(), wh, ev, target); err != nil {
			t.Fatal(err)
		}
		sent[wh] = append(sent[wh], ev)
	}
	if f := r.intake.Figures(); f.Spilled < 12 {
		t.Fatalf("%d entries spilled, want at least 12 of 16 over a 64 KiB bound", f.Spilled)
	}
	// Die: the applier's loop is told to stop before it is let go, so it
	// applies the blocker alone; nothing is synced or forgotten.
	r.intake.mu.Lock()
	r.intake.closed = true
	r.intake.mu.Unlock()
	close(r.intake.stop)
	r.intake.endStopping()
	let()
	r.intake.loops.Wait()
	if f := r.intake.Figures(); f.Unapplied != 16 {
		t.Fatalf("%d entries unapplied at the crash, want the 16 after the blocker", f.Unapplied)
	}
	r.events.intake.Store(nil)
	if err := r.intake.file.close(); err != nil {
		t.Fatal(err)
	}
	again, err := OpenIntake(context.Background(), dir, SynchronousFull, r.events, IntakeOptions{Memory: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	r.intake = again
	if got := again.Replayed(); got.Events != 17 || got.Webhooks != 3 {
		t.Errorf("replayed %+v, want 17 events (the blocker's applied, not synced) of 3 webhooks", got)
	}
	checkSpilledEvents(t, r.events, sent)
	if n := eventCount(t, r.events, blocker); n != 1 {
		t.Errorf("%d events of the webhook applied before the crash, want 1 (not twice)", n)
	}
}

// TestIntakeWaitsForRoomOnDisk: events not yet applied and synced take
// room in intake.db up to its bound; past it an ingest waits, saying for
// what, until its ctx ends or the applier and a sync round make room.
func TestIntakeWaitsForRoomOnDisk(t *testing.T) {
	r := newIntakeRig(t, t.TempDir(), IntakeOptions{Size: 64 << 10, SyncDelay: time.Millisecond})
	_, let := r.holdApplier()
	defer let()
	wh := uuid.NewString()
	body := strings.Repeat("x", 20<<10)
	for range 3 {
		r.ingest(wh, body)
	}
	if f := r.intake.Figures(); f.Unapplied != 4 || f.Waiting != 4 || f.OnDisk < 3*20<<10 {
		t.Errorf("figures with 3 events held back: %+v, want 4 unapplied and unsynced, 60 KiB on disk", f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := r.intake.Ingest(ctx, wh, &Event{Body: []byte(body)}, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "wait for room in the intake") {
		t.Fatalf("a fourth 20 KiB event over a 64 KiB bound on disk: %v, want to wait for room until ctx ends", err)
	}
	done := make(chan error, 1)
	go func() { done <- r.intake.Ingest(context.Background(), wh, &Event{Body: []byte(body)}, nil) }()
	let() // the applier catches up, a sync round forgets, and room comes back
	if err := <-done; err != nil {
		t.Fatalf("an ingest waiting for room: %v", err)
	}
	if err := r.intake.ApplyAll(); err != nil {
		t.Fatal(err)
	}
	if n := eventCount(t, r.events, wh); n != 4 {
		t.Errorf("%d events stored, want the 4 acknowledged", n)
	}
}

// TestAppliedStatsLeaveTheIntakeAlone: Stats applies what the intake holds
// for the webhook first, AppliedStats (a metrics scrape's) does not: with
// the webhook's apply held, it answers at once, with what is applied.
func TestAppliedStatsLeaveTheIntakeAlone(t *testing.T) {
	r := newIntakeRig(t, t.TempDir(), IntakeOptions{})
	wh := uuid.NewString()
	r.ingest(wh, `{}`)
	if err := r.intake.ApplyAll(); err != nil {
		t.Fatal(err)
	}
	r.intake.mu.Lock()
	q := r.intake.queues[wh]
	r.intake.mu.Unlock()
	q.apply.Lock() // as an apply under way would
	r.ingest(wh, `{}`)
	got := make(chan EventStats, 1)
	go func() {
		st, err := r.events.AppliedStats(context.Background(), wh)
		if err != nil {
			t.Error(err)
		}
		got <- st
	}()
	select {
	case st := <-got:
		if st.Events != 1 {
			t.Errorf("AppliedStats: %d events, want the 1 applied", st.Events)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("AppliedStats waited for the intake's apply")
	}
	q.apply.Unlock()
	st, err := r.events.Stats(context.Background(), wh)
	if err != nil || st.Events != 2 {
		t.Errorf("Stats: %d events (%v), want both", st.Events, err)
	}
}

// TestIntakeForgetsScatteredEntriesInChunks: a sync round forgets more
// entries than one chunk of forget, their seqs scattered over webhooks,
// and leaves the intake's writer with its fsyncs (forget relaxes them for
// its own writes only).
func TestIntakeForgetsScatteredEntriesInChunks(t *testing.T) {
	dir := t.TempDir()
	r := newIntakeRig(t, dir, IntakeOptions{SyncDelay: time.Hour})
	webhooks := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	const n = forgetChunk + forgetChunk/2
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= n; i = next.Add(1) {
				ev := &Event{Method: "POST", Body: []byte(`{}`)}
				if err := r.intake.Ingest(context.Background(), webhooks[i%3], ev, nil); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := r.intake.ApplyAll(); err != nil {
		t.Fatal(err)
	}
	if rows := intakeRows(t, dir); rows != n {
		t.Fatalf("the intake holds %d entries before the round, want %d", rows, n)
	}
	r.intake.syncRound()
	if rows := intakeRows(t, dir); rows != 0 {
		t.Errorf("the intake holds %d entries after the round, want 0", rows)
	}
	if f := r.intake.Figures(); f.Waiting != 0 || f.OnDisk != 0 {
		t.Errorf("figures after the round: %+v, want nothing unsynced or on disk", f)
	}
	var level int
	if err := r.intake.file.writer.QueryRow("PRAGMA synchronous").Scan(&level); err != nil || level != 2 {
		t.Errorf("the intake's writer is left at synchronous %d (%v), want 2 (full)", level, err)
	}
}
