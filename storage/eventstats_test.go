package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// countedStats counts every row, as the list of webhooks did before
// event_stats: the truth the kept figures are checked against.
func countedStats(t *testing.T, db *WebhookDB) EventStats {
	t.Helper()
	var (
		c    eventCounts
		last sql.NullInt64
	)
	if err := db.file.reader.QueryRow(`SELECT count(*), max(received_at) FROM events`).Scan(&c.events, &last); err != nil {
		t.Fatalf("count events: %v", err)
	}
	c.lastEventAt = last
	for status, n := range map[DeliveryStatus]*int{DeliveryPending: &c.pending, DeliveryRetrying: &c.retrying,
		DeliveryDelivered: &c.delivered, DeliveryFailed: &c.failed} {
		*n = countRows(t, db, `SELECT count(*) FROM deliveries WHERE status = ?`, status)
	}
	return c.stats()
}

// statsOf is m.Stats of id, failing the test on an error.
func statsOf(t *testing.T, m *WebhookDBManager, id string) EventStats {
	t.Helper()
	st, err := m.Stats(context.Background(), id)
	if err != nil {
		t.Fatalf("Stats(%s): %v", id, err)
	}
	return st
}

func sameStats(a, b EventStats) bool {
	if (a.LastEventAt == nil) != (b.LastEventAt == nil) ||
		a.LastEventAt != nil && !a.LastEventAt.Equal(*b.LastEventAt) {
		return false
	}
	return a.Events == b.Events && reflect.DeepEqual(a.Deliveries, b.Deliveries)
}

func statsString(s EventStats) string {
	last := "none"
	if s.LastEventAt != nil {
		last = fmt.Sprint(s.LastEventAt.UnixNano())
	}
	return fmt.Sprintf("events %d, last %s, %v", s.Events, last, s.Deliveries)
}

// wantStats checks that the manager's figures for id, from memory, are the
// row the file keeps, are what counting every row gives, and are want.
func wantStats(t *testing.T, m *WebhookDBManager, id string, db *WebhookDB, want string) {
	t.Helper()
	if _, cached := m.stats.get(id); !cached {
		t.Errorf("the figures of %s are not held in memory", id)
	}
	fromMemory := statsOf(t, m, id)
	kept, err := db.Stats(context.Background())
	if err != nil {
		t.Fatalf("WebhookDB.Stats: %v", err)
	}
	counted := countedStats(t, db)
	if !sameStats(fromMemory, counted) || !sameStats(kept, counted) {
		t.Errorf("figures from memory: %s\nkept in the file: %s\ncounted: %s",
			statsString(fromMemory), statsString(kept), statsString(counted))
	}
	if got := statsString(counted); got != want {
		t.Errorf("figures = %s, want %s", got, want)
	}
}

// ingestAt stores one event received at the given Unix second, with a
// pending delivery to each of pending and a kept one to each of kept.
func ingestAt(t *testing.T, db *WebhookDB, sec int64, pending, kept []string) (*Event, []Delivery) {
	t.Helper()
	ev := &Event{EntrypointID: "ep", EntrypointKey: "key", Method: http.MethodPost, Path: "/hooks/key",
		Headers: http.Header{}, Body: []byte(`{}`), ReceivedAt: time.Unix(sec, 0)}
	ds, err := db.Ingest(ev, targetsOf(pending, kept))
	if err != nil {
		t.Fatalf("IngestKeeping: %v", err)
	}
	return ev, ds
}

func record(t *testing.T, db *WebhookDB, d Delivery, attempt int, out DeliveryOutcome) {
	t.Helper()
	r := DeliveryResult{DeliveryID: d.ID, Attempt: attempt, StartedAt: time.Now(), StatusCode: 500}
	if err := db.RecordAttempt(context.Background(), r, out); err != nil {
		t.Fatalf("RecordAttempt: %v", err)
	}
}

// Every write that changes a count changes the figures in the same
// transaction, and a write that fails (alone in its transaction, or rolled
// back to its savepoint in a shared one) changes none.
func TestEventStatsFollowEveryWrite(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, ManagerOptions{Synchronous: SynchronousNormal})
	id := newID(t)
	if err := m.Create(ctx, id); err != nil {
		t.Fatal(err)
	}
	h, err := m.acquire(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	defer h.release(m)
	db := h.db
	retry := DeliveryOutcome{Status: DeliveryRetrying, NextAttemptAt: time.Now().Add(time.Hour), LastError: "500"}
	wantStats(t, m, id, db, "events 0, last none, map[delivered:0 failed:0 pending:0 retrying:0]")

	old, oldDs := ingestAt(t, db, 100, []string{"a", "b"}, []string{"kept"})
	_, midDs := ingestAt(t, db, 200, []string{"a"}, nil)
	_, lastDs := ingestAt(t, db, 300, []string{"a"}, []string{"kept"})
	wantStats(t, m, id, db, "events 3, last 300000000000, map[delivered:2 failed:0 pending:4 retrying:0]")

	record(t, db, oldDs[0], 1, retry)
	wantStats(t, m, id, db, "events 3, last 300000000000, map[delivered:2 failed:0 pending:3 retrying:1]")
	record(t, db, oldDs[0], 2, retry) // retrying to retrying: no count moves
	record(t, db, oldDs[0], 3, DeliveryOutcome{Status: DeliveryDelivered})
	record(t, db, oldDs[1], 1, DeliveryOutcome{Status: DeliveryFailed, LastError: "gave up"})
	wantStats(t, m, id, db, "events 3, last 300000000000, map[delivered:3 failed:1 pending:2 retrying:0]")

	if err := db.Reschedule(ctx, midDs[0].ID, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	wantStats(t, m, id, db, "events 3, last 300000000000, map[delivered:3 failed:1 pending:1 retrying:1]")

	redelivered, err := db.Redeliver(ctx, old.ID, []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	wantStats(t, m, id, db, "events 3, last 300000000000, map[delivered:3 failed:1 pending:3 retrying:1]")

	// An attempt that was in flight when the process died, counted at start.
	at := time.Unix(400, 0)
	if err := db.MarkAttemptStarted(ctx, lastDs[0].ID, at); err != nil {
		t.Fatal(err)
	}
	wantStats(t, m, id, db, "events 3, last 300000000000, map[delivered:3 failed:1 pending:3 retrying:1]")
	err = db.RecordInterruptedAttempt(ctx, InterruptedAttempt{DeliveryID: lastDs[0].ID, StartedAt: at},
		DeliveryResult{DeliveryID: lastDs[0].ID, Attempt: 1, StartedAt: at, Error: "interrupted"},
		DeliveryOutcome{Status: DeliveryFailed, LastError: "interrupted"})
	if err != nil {
		t.Fatal(err)
	}
	wantStats(t, m, id, db, "events 3, last 300000000000, map[delivered:3 failed:2 pending:2 retrying:1]")

	// Writes that fail change nothing: alone in a transaction...
	err = db.RecordAttempt(ctx, DeliveryResult{DeliveryID: uuid.NewString(), Attempt: 1}, DeliveryOutcome{Status: DeliveryDelivered})
	wantErr(t, "RecordAttempt of an unknown delivery", err, ErrNotFound)
	if _, err := db.Ingest(&Event{ID: old.ID, Method: "POST", Path: "/", ReceivedAt: time.Unix(999, 0)}, targetsOf([]string{"a"}, nil)); err == nil {
		t.Fatal("an event with the id of a stored one was stored")
	}
	wantStats(t, m, id, db, "events 3, last 300000000000, map[delivered:3 failed:2 pending:2 retrying:1]")
	// ...or rolled back to its savepoint in a transaction shared with others
	// (group commit), whose writes count.
	const concurrent = 16
	var wg sync.WaitGroup
	errs := make([]error, concurrent)
	for i := range concurrent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev := &Event{Method: "POST", Path: "/", ReceivedAt: time.Unix(250, 0)}
			if i == 0 {
				ev.ID = old.ID // fails: the id is taken
			}
			_, errs[i] = db.Ingest(ev, targetsOf([]string{"a"}, nil))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (err != nil) != (i == 0) {
			t.Errorf("concurrent ingest %d: %v", i, err)
		}
	}
	wantStats(t, m, id, db, "events 18, last 300000000000, map[delivered:3 failed:2 pending:17 retrying:1]")

	// Pruning: a finished event goes with its deliveries (ON DELETE CASCADE
	// fires their triggers); one with an open delivery stays.
	for i, d := range redelivered {
		record(t, db, d, 1, DeliveryOutcome{Status: []DeliveryStatus{DeliveryDelivered, DeliveryFailed}[i]})
	}
	if n, err := db.Prune(ctx, time.Unix(260, 0)); err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want the one finished event before 260 s", n, err)
	}
	wantStats(t, m, id, db, "events 17, last 300000000000, map[delivered:1 failed:1 pending:15 retrying:1]")

	// Pruning the latest event takes the last time back to the one before.
	if n, err := db.Prune(ctx, time.Unix(1000, 0)); err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want the finished event of 300 s", n, err)
	}
	wantStats(t, m, id, db, "events 16, last 250000000000, map[delivered:0 failed:0 pending:15 retrying:1]")
	for _, d := range openDeliveries(t, db) {
		record(t, db, d, 9, DeliveryOutcome{Status: DeliveryFailed})
	}
	if n, err := db.Prune(ctx, time.Unix(1000, 0)); err != nil || n != 16 {
		t.Fatalf("Prune = %d, %v; want the 16 events left", n, err)
	}
	wantStats(t, m, id, db, "events 0, last none, map[delivered:0 failed:0 pending:0 retrying:0]")
}

// The figures are in the file, so a restart finds them: the first Stats
// reads the row (opening the file once), the next ones are from memory.
func TestEventStatsSurviveRestart(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	m, err := NewWebhookDBManager(dir, ManagerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := newID(t)
	withDB(t, m, id, func(db *WebhookDB) {
		_, ds := ingestAt(t, db, 100, []string{"a", "b"}, []string{"kept"})
		record(t, db, ds[0], 1, DeliveryOutcome{Status: DeliveryFailed})
	})
	before := statsOf(t, m, id)
	if err := m.CloseAll(ctx); err != nil {
		t.Fatal(err)
	}

	again, err := NewWebhookDBManager(dir, ManagerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = again.CloseAll(ctx) })
	if _, cached := again.stats.get(id); cached {
		t.Fatal("a new manager holds figures it never read")
	}
	if got := statsOf(t, again, id); !sameStats(got, before) {
		t.Errorf("after a restart: %s, want %s", statsString(got), statsString(before))
	}
	if err := again.CloseAll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := statsOf(t, again, id); !sameStats(got, before) || again.OpenCount() != 0 {
		t.Errorf("second read after a restart: %s with %d files open, want %s from memory",
			statsString(got), again.OpenCount(), statsString(before))
	}
	if want := "events 1, last 100000000000, map[delivered:1 failed:1 pending:1 retrying:0]"; statsString(before) != want {
		t.Errorf("figures = %s, want %s", statsString(before), want)
	}
}

// Listing the figures of more webhooks than may be open at once opens no
// event DB: a file opened for it would stay open (nothing more to evict).
func TestEventStatsOfManyWebhooksOpenNoFile(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, ManagerOptions{Synchronous: SynchronousNormal, MaxOpen: 2})
	ids := make([]string, 6)
	for i := range ids {
		ids[i] = newID(t)
		if err := m.Create(ctx, ids[i]); err != nil {
			t.Fatal(err)
		}
		withDB(t, m, ids[i], func(db *WebhookDB) {
			for range i {
				ingestAt(t, db, int64(100+i), []string{"a"}, nil)
			}
		})
	}
	noFile := newID(t) // a declared webhook that has had no event: no file
	if err := m.CloseAll(ctx); err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		for i, id := range ids {
			if got := statsOf(t, m, id); got.Events != i || got.Deliveries[DeliveryPending] != i {
				t.Errorf("round %d: webhook %d: %s, want %d events pending", round, i, statsString(got), i)
			}
		}
		if got := statsOf(t, m, noFile); got.Events != 0 || len(got.Deliveries) != 4 {
			t.Errorf("a webhook without a file: %s, want zeros", statsString(got))
		}
		if n := m.OpenCount(); n != 0 {
			t.Fatalf("round %d: %d event DBs open after reading figures, want 0", round, n)
		}
	}
	if m.Exists(noFile) {
		t.Error("reading the figures of a webhook without a file created it")
	}
}

// An event DB written before event_stats (schema version 2) is counted
// once, by the migration that adds it.
func TestEventStatsMigrationCountsExistingFile(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, ManagerOptions{})
	id := newID(t)
	path := eventPath(t, m, id)
	f, err := openSQLiteFile(path, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, f.writer, eventMigrations[:2]); err != nil {
		t.Fatalf("migrate to version 2: %v", err)
	}
	for _, q := range []string{
		`INSERT INTO events (id, entrypoint_id, entrypoint_key, method, path, headers, body, body_size, received_at)
			VALUES ('ev1', 'ep', 'key', 'POST', '/', '{}', x'', 0, 10), ('ev2', 'ep', 'key', 'POST', '/', '{}', x'', 0, 30)`,
		`INSERT INTO deliveries (id, event_id, target_id, status, attempts, created_at, updated_at) VALUES
			('d1', 'ev1', 't', 'pending', 0, 10, 10), ('d2', 'ev1', 't', 'delivered', 1, 10, 10),
			('d3', 'ev2', 't', 'failed', 3, 30, 30), ('d4', 'ev2', 't', 'retrying', 1, 30, 30),
			('d5', 'ev2', 'u', 'retrying', 2, 30, 30)`,
	} {
		if _, err := f.writer.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := f.close(); err != nil {
		t.Fatal(err)
	}
	got := statsOf(t, m, id)
	if want := "events 2, last 30, map[delivered:1 failed:1 pending:1 retrying:2]"; statsString(got) != want {
		t.Errorf("figures of a version 2 file = %s, want %s", statsString(got), want)
	}
	withDB(t, m, id, func(db *WebhookDB) {
		if v := userVersion(t, db.file.reader); v != len(eventMigrations) {
			t.Errorf("user_version = %d, want %d", v, len(eventMigrations))
		}
		if _, err := db.Redeliver(ctx, "ev1", []string{"t"}); err != nil {
			t.Fatal(err)
		}
		wantStats(t, m, id, db, "events 2, last 30, map[delivered:1 failed:1 pending:2 retrying:2]")
	})
}

// The figures of a deleted webhook, or of one whose file was removed behind
// our back, are not those of the file that is gone.
func TestEventStatsForgetAFileThatIsGone(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, ManagerOptions{})
	zeros := "events 0, last none, map[delivered:0 failed:0 pending:0 retrying:0]"

	deleted := newID(t)
	withDB(t, m, deleted, func(db *WebhookDB) { ingestAt(t, db, 100, []string{"a"}, nil) })
	if err := m.Delete(ctx, deleted); err != nil {
		t.Fatal(err)
	}
	if got := statsOf(t, m, deleted); statsString(got) != zeros {
		t.Errorf("deleted webhook: %s, want zeros", statsString(got))
	}
	if err := m.Create(ctx, deleted); err != nil {
		t.Fatal(err)
	}
	if got := statsOf(t, m, deleted); statsString(got) != zeros {
		t.Errorf("webhook created again: %s, want zeros", statsString(got))
	}

	removed := newID(t)
	db := handleOf(t, m, removed)
	ingestAt(t, db, 100, []string{"a"}, nil)
	path := eventPath(t, m, removed)
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	err := m.With(ctx, removed, func(db *WebhookDB) error {
		_, err := db.Ingest(&Event{Method: "POST", Path: "/"}, targetsOf([]string{"a"}, nil))
		return err
	})
	wantErr(t, "ingest into a removed file", err, ErrEventDBGone)
	if got := statsOf(t, m, removed); statsString(got) != zeros {
		t.Errorf("webhook whose file was removed: %s, want zeros (its events are gone with it)", statsString(got))
	}
}

// Of two rows read from one file (an evicted handle finishing a write while
// a new one opens), the later one stays, whatever order they arrive in.
func TestEventStatsCacheKeepsTheLaterRow(t *testing.T) {
	var c eventStatsCache
	c.publish("w", eventCounts{events: 5, version: 9})
	c.publish("w", eventCounts{events: 4, version: 7})
	if n, _ := c.get("w"); n.events != 5 {
		t.Errorf("after an earlier row arrived late: %d events, want 5", n.events)
	}
	c.publish("w", eventCounts{events: 6, version: 10})
	if n, _ := c.get("w"); n.events != 6 {
		t.Errorf("after a later row: %d events, want 6", n.events)
	}
	c.forget("w")
	c.publish("w", eventCounts{events: 0, version: 0}) // a new file
	if n, ok := c.get("w"); !ok || n.events != 0 {
		t.Errorf("after forget and a new file: %+v, %v; want 0 events", n, ok)
	}
}
