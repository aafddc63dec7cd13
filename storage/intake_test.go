package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
	r := &intakeRig{t: t, dir: dir, applied: map[string][]AppliedEvent{}}
	events, err := NewWebhookDBManager(dir, ManagerOptions{})
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
	r.ingest(wh, `{}`)
	r.intake.syncRound() // closes an epoch in which nothing was applied
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
	if f := again.Figures(); f.Held != 8*intakeEntryOverhead {
		t.Errorf("%d bytes held after the open, want %d: the entries' bookkeeping only", f.Held, 8*intakeEntryOverhead)
	}
	// The applier leaves them to the reads of their webhooks until
	// ReleaseReplayed: a round of it applies none.
	again.applyReadyUntil(context.Background())
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

// TestIntakeBoundsMemory: events not yet applied hold memory up to the
// bound; past it an ingest waits for the applier, until its ctx ends.
func TestIntakeBoundsMemory(t *testing.T) {
	r := newIntakeRig(t, t.TempDir(), IntakeOptions{Memory: 64 << 10})
	wh := uuid.NewString()
	// Hold the webhook's apply, as a slow file would.
	r.intake.mu.Lock()
	q := &intakeQueue{}
	r.intake.queues[wh] = q
	r.intake.mu.Unlock()
	q.apply.Lock()
	body := strings.Repeat("x", 20<<10)
	for range 3 {
		r.ingest(wh, body)
	}
	if f := r.intake.Figures(); f.Unapplied != 3 || f.Waiting != 3 || f.Held < 3*20<<10 {
		t.Errorf("figures with 3 events held back: %+v, want 3 unapplied and unsynced, 60 KiB held", f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := r.intake.Ingest(ctx, wh, &Event{Body: []byte(body)}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a fourth 20 KiB event over a 64 KiB bound: %v, want to wait until ctx ends", err)
	}
	done := make(chan error, 1)
	go func() { done <- r.intake.Ingest(context.Background(), wh, &Event{Body: []byte(body)}, nil) }()
	q.apply.Unlock() // the applier catches up, and memory comes back
	if err := <-done; err != nil {
		t.Fatalf("an ingest waiting for memory: %v", err)
	}
	if err := r.intake.ApplyAll(); err != nil {
		t.Fatal(err)
	}
	if n := eventCount(t, r.events, wh); n != 4 {
		t.Errorf("%d events stored, want the 4 acknowledged", n)
	}
	if f := r.intake.Figures(); f.Held != 0 || f.Unapplied != 0 {
		t.Errorf("figures once everything is applied: %+v, want nothing held or unapplied", f)
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
