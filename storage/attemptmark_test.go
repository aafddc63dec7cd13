package storage

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// An event DB written by the first release (schema version 1) gains the
// in-flight mark and keeps its events, deliveries and attempts.
func TestEventDBFromVersion1GainsAttemptMarkAndKeepsRows(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events-v1.db")
	f, err := openSQLiteFile(path, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, f.writer, eventMigrations[:1]); err != nil {
		t.Fatalf("migrate to version 1: %v", err)
	}
	for _, q := range []string{
		`INSERT INTO events (id, entrypoint_id, entrypoint_key, method, path, headers, body, body_size, received_at)
			VALUES ('ev1', 'ep', 'key', 'POST', '/hooks/key', '{}', x'7b7d', 2, 10)`,
		`INSERT INTO deliveries (id, event_id, target_id, status, attempts, created_at, updated_at)
			VALUES ('d-pending', 'ev1', 't1', 'pending', 0, 10, 10)`,
		`INSERT INTO deliveries (id, event_id, target_id, status, attempts, next_attempt_at, last_error, created_at, updated_at)
			VALUES ('d-retrying', 'ev1', 't2', 'retrying', 1, 99, 'target answered 500', 10, 11)`,
		`INSERT INTO delivery_results (delivery_id, attempt, started_at, duration_ns, status_code, error)
			VALUES ('d-retrying', 1, 11, 5, 500, 'target answered 500')`,
	} {
		if _, err := f.writer.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := f.close(); err != nil {
		t.Fatal(err)
	}

	db, err := openWebhookDB(ctx, "v1", path, "")
	if err != nil {
		t.Fatalf("open a version 1 event DB: %v", err)
	}
	t.Cleanup(func() { _ = db.close() })
	if v := userVersion(t, db.file.reader); v != len(eventMigrations) {
		t.Errorf("user_version = %d, want %d", v, len(eventMigrations))
	}
	open, err := db.OpenDeliveries(ctx)
	if err != nil || len(open) != 2 {
		t.Fatalf("open deliveries after the migration = %+v, %v; want 2", open, err)
	}
	if d := findDelivery(t, open, "d-retrying"); d.Attempts != 1 || d.LastError != "target answered 500" || d.NextAttemptAt.UnixNano() != 99 {
		t.Errorf("retrying delivery after the migration = %+v", d)
	}
	if rs, err := db.DeliveryResults(ctx, "d-retrying"); err != nil || len(rs) != 1 || rs[0].StatusCode != 500 {
		t.Errorf("results after the migration = %+v, %v", rs, err)
	}
	if ev, err := db.Event(ctx, "ev1"); err != nil || string(ev.Body) != "{}" {
		t.Errorf("event after the migration = %+v, %v", ev, err)
	}
	// No delivery of the old file is taken for an interrupted attempt.
	if marked, err := db.InterruptedAttempts(ctx); err != nil || len(marked) != 0 {
		t.Errorf("interrupted attempts in a migrated file = %+v, %v; want none", marked, err)
	}
	if err := db.MarkAttemptStarted(ctx, "d-pending", time.Unix(0, 42)); err != nil {
		t.Errorf("mark in a migrated file: %v", err)
	}
}

func TestAttemptMarkIsSetThenClearedByTheRecordOfTheAttempt(t *testing.T) {
	ctx := context.Background()
	db := openEventDB(t)
	ev := ingestOne(t, db, "mark", "t1", "t2")
	ds, err := db.Deliveries(ctx, ev.ID)
	if err != nil || len(ds) != 2 {
		t.Fatalf("deliveries = %+v, %v", ds, err)
	}
	first, second := ds[0].ID, ds[1].ID
	at := time.Now()
	for _, id := range []string{first, second} {
		if err := db.MarkAttemptStarted(ctx, id, at); err != nil {
			t.Fatalf("MarkAttemptStarted: %v", err)
		}
	}
	marked, err := db.InterruptedAttempts(ctx)
	if err != nil || len(marked) != 2 || marked[0].DeliveryID != first || !marked[0].StartedAt.Equal(at) {
		t.Fatalf("marked = %+v, %v; want both, at %s", marked, err, at)
	}

	// Recording the attempt clears the mark in the same write.
	err = db.RecordAttempt(ctx, DeliveryResult{DeliveryID: first, Attempt: 1, StartedAt: at, StatusCode: 200},
		DeliveryOutcome{Status: DeliveryDelivered})
	if err != nil {
		t.Fatal(err)
	}
	// A stop that cut the attempt short clears it without counting one.
	if err := db.ClearAttemptStarted(ctx, second); err != nil {
		t.Fatal(err)
	}
	if marked, err := db.InterruptedAttempts(ctx); err != nil || len(marked) != 0 {
		t.Errorf("marks left = %+v, %v; want none", marked, err)
	}
	if d, _ := db.Delivery(ctx, second); d.Status != DeliveryPending || d.Attempts != 0 {
		t.Errorf("cleared delivery = %+v, want pending with no attempt", d)
	}

	// A finished delivery cannot be marked.
	if err := db.MarkAttemptStarted(ctx, first, time.Now()); !errors.Is(err, ErrNotFound) {
		t.Errorf("mark of a delivered delivery = %v, want ErrNotFound", err)
	}
	if marked, _ := db.InterruptedAttempts(ctx); len(marked) != 0 {
		t.Errorf("a finished delivery is marked: %+v", marked)
	}
}

func TestInterruptedAttemptIsRecordedOnlyWhileStillMarked(t *testing.T) {
	ctx := context.Background()
	db := openEventDB(t)
	ev := ingestOne(t, db, "interrupted", "t1")
	ds, _ := db.Deliveries(ctx, ev.ID)
	id := ds[0].ID
	at := time.Now().Add(-time.Minute)
	if err := db.MarkAttemptStarted(ctx, id, at); err != nil {
		t.Fatal(err)
	}
	marked, err := db.InterruptedAttempts(ctx)
	if err != nil || len(marked) != 1 {
		t.Fatalf("marked = %+v, %v", marked, err)
	}
	const why = "interrupted: the gateway stopped during this attempt"
	next := time.Now().Add(time.Hour)
	record := func(a InterruptedAttempt) error {
		return db.RecordInterruptedAttempt(ctx, a,
			DeliveryResult{DeliveryID: id, Attempt: 1, StartedAt: a.StartedAt, Error: why},
			DeliveryOutcome{Status: DeliveryRetrying, NextAttemptAt: next, LastError: why})
	}

	// Marked again since it was read (an attempt of this process): the
	// stale read counts nothing.
	if err := db.MarkAttemptStarted(ctx, id, at.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := record(marked[0]); !errors.Is(err, ErrNotInterrupted) {
		t.Fatalf("record with a stale mark = %v, want ErrNotInterrupted", err)
	}
	if rs, _ := db.DeliveryResults(ctx, id); len(rs) != 0 {
		t.Fatalf("a stale mark recorded %+v", rs)
	}

	marked, _ = db.InterruptedAttempts(ctx)
	if err := record(marked[0]); err != nil {
		t.Fatalf("RecordInterruptedAttempt: %v", err)
	}
	d, _ := db.Delivery(ctx, id)
	if d.Status != DeliveryRetrying || d.Attempts != 1 || d.LastError != why || !d.NextAttemptAt.Equal(next) {
		t.Errorf("delivery after the interrupted attempt = %+v", d)
	}
	if rs, _ := db.DeliveryResults(ctx, id); len(rs) != 1 || rs[0].Error != why || !rs[0].StartedAt.Equal(marked[0].StartedAt) {
		t.Errorf("results = %+v, want the interrupted attempt", rs)
	}
	if left, _ := db.InterruptedAttempts(ctx); len(left) != 0 {
		t.Errorf("mark left after the record: %+v", left)
	}
	// Counted once: a second record finds no mark.
	if err := record(marked[0]); !errors.Is(err, ErrNotInterrupted) {
		t.Errorf("second record = %v, want ErrNotInterrupted", err)
	}
	if rs, _ := db.DeliveryResults(ctx, id); len(rs) != 1 {
		t.Errorf("results after a second record = %d, want 1", len(rs))
	}
}

// Marks alone are committed without an fsync (synchronous=NORMAL for their
// transaction only): the writer is back at FULL after them, so that events
// stay durable against power loss, and marks mixed with ingests commit too.
func TestMarksLeaveTheWriterAtSynchronousFull(t *testing.T) {
	ctx := context.Background()
	db := openEventDB(t) // the default: synchronous=FULL
	synchronous := func() int {
		t.Helper()
		var level int
		if err := db.file.writer.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&level); err != nil {
			t.Fatal(err)
		}
		return level
	}
	if got := synchronous(); got != 2 {
		t.Fatalf("writer at synchronous %d before any mark, want 2 (FULL)", got)
	}
	var ids []string
	for i := range 8 {
		ev := ingestOne(t, db, "sync"+string(rune('a'+i)), "t1")
		ds, err := db.Deliveries(ctx, ev.ID)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ds[0].ID)
	}
	if err := db.MarkAttemptStarted(ctx, ids[0], time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := synchronous(); got != 2 {
		t.Errorf("writer at synchronous %d after a mark, want 2 (FULL)", got)
	}

	// Marks and ingests at once share batches; all commit.
	errs := make(chan error, 2*len(ids))
	for i, id := range ids[1:] {
		go func() { errs <- db.MarkAttemptStarted(ctx, id, time.Now()) }()
		go func() {
			_, err := db.Ingest(&Event{EntrypointID: "ep", EntrypointKey: "k", Method: "POST", Path: "/x",
				Headers: map[string][]string{}, Body: []byte{byte(i)}}, pendingTo("t1"))
			errs <- err
		}()
	}
	for range 2 * (len(ids) - 1) {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if marked, err := db.InterruptedAttempts(ctx); err != nil || len(marked) != len(ids) {
		t.Errorf("marked = %d, %v; want %d", len(marked), err, len(ids))
	}
	if n := countEvents(t, db); n != 2*len(ids)-1 {
		t.Errorf("%d events, want %d", n, 2*len(ids)-1)
	}
	if got := synchronous(); got != 2 {
		t.Errorf("writer at synchronous %d after marks and ingests, want 2 (FULL)", got)
	}
}

// markWaiting waits until a mark of db leads its group commit (attemptWrites):
// with the writer held, it waits for the writer connection.
func markWaiting(t *testing.T, db *WebhookDB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		g := db.markCommitter()
		g.mu.Lock()
		leading := g.leading
		g.mu.Unlock()
		if leading {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no mark waiting for the writer after 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// In-flight marks are group-committed apart from the other writes of their
// event DB: a mark never waits in the shared queue (behind a batch of
// ingests and its fsync), only for the writer connection; and the marks
// that wait together commit in one transaction.
func TestMarksCommitApartFromOtherWrites(t *testing.T) {
	ctx := context.Background()
	db := openEventDB(t)
	var ids []string
	for i := range 20 {
		ev := ingestOne(t, db, fmt.Sprintf("apart%d", i), "t1")
		ds, err := db.Deliveries(ctx, ev.ID)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ds[0].ID)
	}
	release := holdWriter(t, db)
	ingested := make(chan error, 1)
	go func() {
		_, err := db.Ingest(&Event{EntrypointID: "ep", EntrypointKey: "k", Method: "POST", Path: "/x",
			Headers: map[string][]string{}, Body: []byte("behind")}, pendingTo("t1"))
		ingested <- err
	}()
	queued(t, db, 1)
	marked := make(chan error, len(ids))
	go func() { marked <- db.MarkAttemptStarted(ctx, ids[0], time.Now()) }()
	markWaiting(t, db)
	for _, id := range ids[1:] {
		go func() { marked <- db.MarkAttemptStarted(ctx, id, time.Now()) }()
	}
	g := db.markCommitter()
	waitFor := time.Now().Add(10 * time.Second)
	for {
		g.mu.Lock()
		n := len(g.queue)
		g.mu.Unlock()
		if n == len(ids)-1 {
			break
		}
		if time.Now().After(waitFor) {
			t.Fatalf("%d marks queued behind the first, want %d", n, len(ids)-1)
		}
		time.Sleep(time.Millisecond)
	}
	db.commits.mu.Lock()
	shared := len(db.commits.queue)
	db.commits.mu.Unlock()
	if shared != 1 {
		t.Errorf("%d writes in the shared queue, want the ingest alone", shared)
	}
	before := g.transactions.Load()
	release()
	for range ids {
		if err := <-marked; err != nil {
			t.Fatalf("MarkAttemptStarted: %v", err)
		}
	}
	if err := <-ingested; err != nil {
		t.Fatalf("Ingest: %v", err)
	}
	if n := g.transactions.Load() - before; n != 2 {
		t.Errorf("the marks took %d transactions, want 2 (the first alone, the rest together)", n)
	}
	if got, err := db.InterruptedAttempts(ctx); err != nil || len(got) != len(ids) {
		t.Errorf("marked = %d, %v; want %d", len(got), err, len(ids))
	}
}
