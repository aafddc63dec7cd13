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
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// --- helpers shared by the tests of this package ---

func newManager(t *testing.T, opts ManagerOptions) *WebhookDBManager {
	t.Helper()
	m, err := NewWebhookDBManager(filepath.Join(t.TempDir(), "data"), opts)
	if err != nil {
		t.Fatalf("NewWebhookDBManager: %v", err)
	}
	t.Cleanup(func() {
		if err := m.CloseAll(context.Background()); err != nil {
			t.Errorf("CloseAll: %v", err)
		}
	})
	return m
}

func newID(t *testing.T) string {
	t.Helper()
	return uuid.NewString()
}

// rawDB opens path with a plain connection of the driver, outside of our code,
// to look at what is really in the file.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.ToSlash(path))
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func userVersion(t *testing.T, db *sql.DB) int {
	t.Helper()
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatalf("read user_version: %v", err)
	}
	return v
}

func tableNames(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
	if err != nil {
		t.Fatalf("list tables: %v", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

func fileExists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err == nil {
		return true
	}
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	t.Fatalf("stat %s: %v", path, err)
	return false
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read dir %s: %v", dir, err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func eventPath(t *testing.T, m *WebhookDBManager, id string) string {
	t.Helper()
	p, err := m.EventDBPath(id)
	if err != nil {
		t.Fatalf("EventDBPath(%q): %v", id, err)
	}
	return p
}

// withDB runs fn inside m.With and fails the test on any error.
func withDB(t *testing.T, m *WebhookDBManager, id string, fn func(*WebhookDB)) {
	t.Helper()
	if err := m.With(context.Background(), id, func(db *WebhookDB) error {
		fn(db)
		return nil
	}); err != nil {
		t.Fatalf("With(%s): %v", id, err)
	}
}

// handleOf returns the *WebhookDB With hands out for id now.
func handleOf(t *testing.T, m *WebhookDBManager, id string) *WebhookDB {
	t.Helper()
	var got *WebhookDB
	withDB(t, m, id, func(db *WebhookDB) { got = db })
	return got
}

func ingestOne(t *testing.T, db *WebhookDB, marker string, targets ...string) *Event {
	t.Helper()
	ev := &Event{
		EntrypointID:  "ep-" + marker,
		EntrypointKey: "key-" + marker,
		Method:        http.MethodPost,
		Path:          "/hooks/" + marker,
		Headers:       http.Header{"X-Marker": {marker}},
		Body:          []byte(`{"marker":"` + marker + `"}`),
		ContentType:   "application/json",
	}
	if _, err := db.Ingest(ev, pendingTo(targets...)); err != nil {
		t.Fatalf("Ingest into %s: %v", db.webhookID, err)
	}
	return ev
}

func countEvents(t *testing.T, db *WebhookDB) int {
	t.Helper()
	var n int
	if err := db.file.reader.QueryRow("SELECT count(*) FROM events").Scan(&n); err != nil {
		t.Fatalf("count events: %v", err)
	}
	return n
}

// cachedIDs lists the webhook ids the manager holds a live (not evicted) handle for.
func cachedIDs(m *WebhookDBManager) []string {
	var ids []string
	m.handles.Range(func(k, v any) bool {
		if h := v.(*eventDBHandle); h.ready.Load() && !h.evicted.Load() {
			ids = append(ids, k.(string))
		}
		return true
	})
	sort.Strings(ids)
	return ids
}

func sorted(ids ...string) []string {
	out := append([]string(nil), ids...)
	sort.Strings(out)
	return out
}

// --- Create and ids ---

func TestCreateMakesFileWithSchema(t *testing.T) {
	m := newManager(t, ManagerOptions{})
	id := newID(t)
	path := eventPath(t, m, id)
	if fileExists(t, path) {
		t.Fatalf("%s exists before Create", path)
	}
	if err := m.Create(context.Background(), id); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if !fileExists(t, path) {
		t.Fatalf("Create did not create %s", path)
	}
	if want := filepath.Join(m.dir, "events-"+id+".db"); path != want {
		t.Errorf("path = %s, want %s", path, want)
	}
	// Create opens the file through the cache, as any use would (one writer
	// per file): it stays open within max_open_event_dbs.
	if n := m.OpenCount(); n != 1 {
		t.Errorf("OpenCount after Create = %d, want 1 (the handle in the cache)", n)
	}
	raw := rawDB(t, path)
	if v := userVersion(t, raw); v != len(eventMigrations) {
		t.Errorf("user_version = %d, want %d", v, len(eventMigrations))
	}
	tables := tableNames(t, raw)
	for _, want := range []string{"deliveries", "delivery_attempts", "events"} {
		if !contains(tables, want) {
			t.Errorf("table %s missing; tables: %v", want, tables)
		}
	}
	var mode string
	if err := raw.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Errorf("journal_mode = %q, want wal", mode)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestCreateIsIdempotentAndKeepsData(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, ManagerOptions{})
	id := newID(t)
	if err := m.Create(ctx, id); err != nil {
		t.Fatalf("first Create: %v", err)
	}
	var ev *Event
	withDB(t, m, id, func(db *WebhookDB) { ev = ingestOne(t, db, "kept", "t1") })

	// Again while the handle is cached, and again after it was closed.
	if err := m.Create(ctx, id); err != nil {
		t.Fatalf("Create while open: %v", err)
	}
	if err := m.Close(ctx, id); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := m.Create(ctx, id); err != nil {
		t.Fatalf("Create of an existing file: %v", err)
	}
	withDB(t, m, id, func(db *WebhookDB) {
		if n := countEvents(t, db); n != 1 {
			t.Fatalf("events after repeated Create = %d, want 1", n)
		}
		if _, err := db.Event(ctx, ev.ID); err != nil {
			t.Fatalf("event lost after repeated Create: %v", err)
		}
	})
}

func TestInvalidIDsAreRejectedWithoutTouchingTheFilesystem(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	dir := filepath.Join(root, "data")
	m, err := NewWebhookDBManager(dir, ManagerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.CloseAll(ctx)

	valid := uuid.NewString()
	cases := []struct{ name, id string }{
		{"empty", ""},
		{"parent traversal", "../x"},
		{"traversal to a uuid", "../" + valid},
		{"absolute path", "/tmp/" + valid},
		{"not a uuid", "ABC"},
		{"uppercase uuid", strings.ToUpper(valid)},
		{"braced uuid", "{" + valid + "}"},
		{"urn uuid", "urn:uuid:" + valid},
		{"uuid without hyphens", strings.ReplaceAll(valid, "-", "")},
		{"uuid with trailing slash", valid + "/"},
		{"uuid with suffix", valid + ".db"},
		{"uuid with NUL", valid + "\x00"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := ValidateID(tc.id); err == nil {
				t.Errorf("ValidateID(%q) = nil, want an error", tc.id)
			}
			if p, err := m.EventDBPath(tc.id); err == nil {
				t.Errorf("EventDBPath(%q) = %q, want an error", tc.id, p)
			}
			if err := m.Create(ctx, tc.id); err == nil {
				t.Errorf("Create(%q) = nil, want an error", tc.id)
			}
			called := false
			if err := m.With(ctx, tc.id, func(*WebhookDB) error { called = true; return nil }); err == nil {
				t.Errorf("With(%q) = nil, want an error", tc.id)
			}
			if called {
				t.Errorf("With(%q) ran its function", tc.id)
			}
			if err := m.Delete(ctx, tc.id); err == nil {
				t.Errorf("Delete(%q) = nil, want an error", tc.id)
			}
		})
	}
	if got := dirEntries(t, dir); len(got) != 0 {
		t.Errorf("data directory holds %v after invalid ids, want nothing", got)
	}
	if got := dirEntries(t, root); !reflect.DeepEqual(got, []string{"data"}) {
		t.Errorf("parent of the data directory holds %v, want only data", got)
	}
	if n := m.OpenCount(); n != 0 {
		t.Errorf("OpenCount = %d, want 0", n)
	}
	if err := ValidateID(valid); err != nil {
		t.Errorf("ValidateID(%q) of a canonical uuid: %v", valid, err)
	}
}

func TestWithCreatesMissingFileLazily(t *testing.T) {
	m := newManager(t, ManagerOptions{})
	id := newID(t)
	path := eventPath(t, m, id)
	if fileExists(t, path) {
		t.Fatal("file exists before With")
	}
	withDB(t, m, id, func(db *WebhookDB) {
		if db.webhookID != id {
			t.Errorf("WebhookID = %s, want %s", db.webhookID, id)
		}
		if db.file.path != path {
			t.Errorf("Path = %s, want %s", db.file.path, path)
		}
		if n := countEvents(t, db); n != 0 {
			t.Errorf("new file has %d events", n)
		}
		ingestOne(t, db, "lazy", "t")
	})
	if !fileExists(t, path) {
		t.Fatalf("With did not create %s", path)
	}
	if n := m.OpenCount(); n != 1 {
		t.Errorf("OpenCount = %d, want 1", n)
	}
	if v := userVersion(t, rawDB(t, path)); v != len(eventMigrations) {
		t.Errorf("user_version of lazily created file = %d, want %d", v, len(eventMigrations))
	}
}

func TestWithReturnsErrorOfFunction(t *testing.T) {
	m := newManager(t, ManagerOptions{})
	sentinel := errors.New("from fn")
	if err := m.With(context.Background(), newID(t), func(*WebhookDB) error { return sentinel }); !errors.Is(err, sentinel) {
		t.Fatalf("With = %v, want %v", err, sentinel)
	}
}

// --- Delete ---

func TestDeleteRemovesFilesAndOnlyCreateBringsThemBack(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, ManagerOptions{})
	id := newID(t)
	path := eventPath(t, m, id)
	withDB(t, m, id, func(db *WebhookDB) {
		ingestOne(t, db, "one", "t")
		ingestOne(t, db, "two", "t")
	})
	if !fileExists(t, path+"-wal") {
		t.Fatalf("expected %s-wal while the DB is open in WAL mode", path)
	}

	if err := m.Delete(ctx, id); err != nil {
		t.Fatalf("Delete of an open DB: %v", err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if fileExists(t, p) {
			t.Errorf("%s still exists after Delete", p)
		}
	}
	if n := m.OpenCount(); n != 0 {
		t.Errorf("OpenCount after Delete = %d, want 0", n)
	}

	// A late user (a retry timer, an ingest routed just before) does not
	// bring a deleted webhook's file back by lazy creation.
	err := m.With(ctx, id, func(*WebhookDB) error { return nil })
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("With after Delete: %v, want ErrNotFound", err)
	}
	if fileExists(t, path) {
		t.Error("With after Delete created the file again")
	}

	// Create makes it usable again. Leftovers of a crashed process: Delete
	// removes them as well.
	if err := m.Create(ctx, id); err != nil {
		t.Fatal(err)
	}
	withDB(t, m, id, func(db *WebhookDB) { ingestOne(t, db, "three", "t") })
	if err := m.Close(ctx, id); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.WriteFile(path+suffix, []byte("left over by a crash"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Delete(ctx, id); err != nil {
		t.Fatalf("Delete of a closed DB with leftovers: %v", err)
	}
	if got := dirEntries(t, m.dir); len(got) != 0 {
		t.Errorf("data directory holds %v after Delete, want nothing", got)
	}

	if err := m.Create(ctx, id); err != nil {
		t.Fatal(err)
	}
	withDB(t, m, id, func(db *WebhookDB) {
		if n := countEvents(t, db); n != 0 {
			t.Errorf("recreated DB has %d events, want 0", n)
		}
	})

	// Deleting a webhook whose file never existed is not an error.
	if err := m.Delete(ctx, newID(t)); err != nil {
		t.Errorf("Delete of a missing file: %v", err)
	}
}

// --- delivery workflow ---

func TestDeliveryWorkflow(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, ManagerOptions{})
	id := newID(t)
	received := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	body := []byte("{\"a\":1}\x00\xff binary tail")
	headers := http.Header{
		"Content-Type":      {"application/json"},
		"X-Github-Event":    {"push"},
		"X-Multi":           {"one", "two"},
		"X-Hub-Signature-2": {"sha256=abc"},
	}

	withDB(t, m, id, func(db *WebhookDB) {
		ev := &Event{
			EntrypointID:  "0b7c8d9e-0000-4000-8000-000000000001",
			EntrypointKey: "github-push",
			Method:        http.MethodPost,
			Path:          "/hooks/github-push",
			Query:         "a=1&b=two%20words",
			Headers:       headers,
			Body:          body,
			ContentType:   "application/json",
			RemoteAddr:    "192.0.2.7:54321",
			ReceivedAt:    received,
		}
		deliveries, err := db.Ingest(ev, pendingTo("target-a", "target-b"))
		if err != nil {
			t.Fatalf("Ingest: %v", err)
		}
		if err := ValidateID(ev.ID); err != nil {
			t.Errorf("Ingest assigned event id %q: %v", ev.ID, err)
		}
		if len(deliveries) != 2 {
			t.Fatalf("Ingest returned %d deliveries, want 2", len(deliveries))
		}
		if deliveries[0].ID == deliveries[1].ID {
			t.Errorf("both deliveries have id %s", deliveries[0].ID)
		}

		got, err := db.Event(ctx, ev.ID)
		if err != nil {
			t.Fatalf("Event: %v", err)
		}
		if got.ID != ev.ID || got.EntrypointID != ev.EntrypointID || got.EntrypointKey != ev.EntrypointKey ||
			got.Method != ev.Method || got.Path != ev.Path || got.Query != ev.Query ||
			got.ContentType != ev.ContentType || got.RemoteAddr != ev.RemoteAddr {
			t.Errorf("Event read back as %+v, want %+v", got, ev)
		}
		if !reflect.DeepEqual(got.Headers, headers) {
			t.Errorf("headers = %v, want %v", got.Headers, headers)
		}
		if !bytes.Equal(got.Body, body) {
			t.Errorf("body = %q, want %q", got.Body, body)
		}
		if !got.ReceivedAt.Equal(received) {
			t.Errorf("received at %v, want %v", got.ReceivedAt, received)
		}
		if _, err := db.Event(ctx, uuid.NewString()); !errors.Is(err, ErrNotFound) {
			t.Errorf("Event of an unknown id = %v, want ErrNotFound", err)
		}

		open := openDeliveries(t, db)
		if len(open) != 2 {
			t.Fatalf("open deliveries after ingest = %d, want 2", len(open))
		}
		byTarget := map[string]Delivery{}
		for _, d := range open {
			if d.Status != DeliveryPending || d.Attempts != 0 || d.EventID != ev.ID || !d.NextAttemptAt.IsZero() {
				t.Errorf("new delivery = %+v, want pending, 0 attempts, of event %s, no next attempt", d, ev.ID)
			}
			if !d.CreatedAt.Equal(received) {
				t.Errorf("delivery created at %v, want %v", d.CreatedAt, received)
			}
			byTarget[d.TargetID] = d
		}
		da, db2 := byTarget["target-a"], byTarget["target-b"]
		if da.ID == "" || db2.ID == "" {
			t.Fatalf("deliveries by target = %v, want target-a and target-b", byTarget)
		}

		// Attempt 1 of target-a fails: retrying, with the next attempt stored.
		start1 := time.Date(2024, 5, 6, 7, 8, 10, 5, time.UTC)
		next := time.Date(2024, 5, 6, 7, 8, 40, 999, time.UTC)
		r1 := DeliveryResult{DeliveryID: da.ID, Attempt: 1, StartedAt: start1, Duration: 1500 * time.Millisecond,
			StatusCode: 503, Error: "status 503", ResponseBody: []byte("busy")}
		if err := db.RecordAttempt(ctx, r1, DeliveryOutcome{Status: DeliveryRetrying, NextAttemptAt: next, LastError: "status 503"}); err != nil {
			t.Fatalf("RecordAttempt 1: %v", err)
		}
		open = openDeliveries(t, db)
		if len(open) != 2 {
			t.Fatalf("open deliveries after a failed attempt = %d, want 2", len(open))
		}
		a := findDelivery(t, open, da.ID)
		if a.Status != DeliveryRetrying || a.Attempts != 1 || !a.NextAttemptAt.Equal(next) || a.LastError != "status 503" {
			t.Errorf("after failed attempt: %+v, want retrying, 1 attempt, next %v, last error", a, next)
		}

		// Attempt 2 succeeds.
		start2 := next.Add(time.Millisecond)
		r2 := DeliveryResult{DeliveryID: da.ID, Attempt: 2, StartedAt: start2, Duration: 20 * time.Millisecond,
			StatusCode: 200, ResponseBody: []byte(`{"ok":true}`)}
		if err := db.RecordAttempt(ctx, r2, DeliveryOutcome{Status: DeliveryDelivered}); err != nil {
			t.Fatalf("RecordAttempt 2: %v", err)
		}
		open = openDeliveries(t, db)
		if len(open) != 1 || open[0].ID != db2.ID {
			t.Fatalf("open deliveries after delivery = %+v, want only %s", open, db2.ID)
		}

		all, err := db.Deliveries(ctx, ev.ID)
		if err != nil {
			t.Fatalf("Deliveries: %v", err)
		}
		if len(all) != 2 {
			t.Fatalf("Deliveries = %d, want 2", len(all))
		}
		a = findDelivery(t, all, da.ID)
		if a.Status != DeliveryDelivered || a.Attempts != 2 || !a.NextAttemptAt.IsZero() || a.LastError != "" {
			t.Errorf("after delivery: %+v, want delivered, 2 attempts, no next attempt, no error", a)
		}

		results, err := db.DeliveryResults(ctx, da.ID)
		if err != nil {
			t.Fatalf("DeliveryResults: %v", err)
		}
		if len(results) != 2 {
			t.Fatalf("DeliveryResults = %d, want 2", len(results))
		}
		for i, want := range []DeliveryResult{r1, r2} {
			got := results[i]
			if got.DeliveryID != want.DeliveryID || got.Attempt != want.Attempt || !got.StartedAt.Equal(want.StartedAt) ||
				got.Duration != want.Duration || got.StatusCode != want.StatusCode || got.Error != want.Error ||
				!bytes.Equal(got.ResponseBody, want.ResponseBody) {
				t.Errorf("result %d = %+v, want %+v", i, got, want)
			}
		}
		if res, err := db.DeliveryResults(ctx, db2.ID); err != nil || len(res) != 0 {
			t.Errorf("results of the untried delivery = %v, %v; want none", res, err)
		}

		// target-b gives up at once: no longer open.
		r3 := DeliveryResult{DeliveryID: db2.ID, Attempt: 1, StartedAt: start1, Error: "connection refused"}
		if err := db.RecordAttempt(ctx, r3, DeliveryOutcome{Status: DeliveryFailed, LastError: "connection refused"}); err != nil {
			t.Fatalf("RecordAttempt 3: %v", err)
		}
		if open := openDeliveries(t, db); len(open) != 0 {
			t.Errorf("open deliveries after the last one failed = %+v, want none", open)
		}

		unknown := DeliveryResult{DeliveryID: uuid.NewString(), Attempt: 1, StartedAt: start1}
		if err := db.RecordAttempt(ctx, unknown, DeliveryOutcome{Status: DeliveryDelivered}); !errors.Is(err, ErrNotFound) {
			t.Errorf("RecordAttempt of an unknown delivery = %v, want ErrNotFound", err)
		}
		if res, err := db.DeliveryResults(ctx, unknown.DeliveryID); err != nil || len(res) != 0 {
			t.Errorf("the unknown delivery's attempt was stored: %v, %v", res, err)
		}
	})
}

func openDeliveries(t *testing.T, db *WebhookDB) []Delivery {
	t.Helper()
	d, err := db.OpenDeliveries(context.Background())
	if err != nil {
		t.Fatalf("OpenDeliveries: %v", err)
	}
	return d
}

func findDelivery(t *testing.T, ds []Delivery, id string) Delivery {
	t.Helper()
	for _, d := range ds {
		if d.ID == id {
			return d
		}
	}
	t.Fatalf("delivery %s not in %+v", id, ds)
	return Delivery{}
}

func TestWebhookDBsAreIsolated(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, ManagerOptions{})
	a, b := newID(t), newID(t)
	var evA, evB *Event
	withDB(t, m, a, func(db *WebhookDB) {
		evA = ingestOne(t, db, "a1", "ta")
		ingestOne(t, db, "a2", "ta")
	})
	withDB(t, m, b, func(db *WebhookDB) { evB = ingestOne(t, db, "b1", "tb") })

	withDB(t, m, a, func(db *WebhookDB) {
		if n := countEvents(t, db); n != 2 {
			t.Errorf("A holds %d events, want 2", n)
		}
		if _, err := db.Event(ctx, evB.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("B's event found in A: %v", err)
		}
		if open := openDeliveries(t, db); len(open) != 2 {
			t.Errorf("A has %d open deliveries, want 2", len(open))
		}
	})
	withDB(t, m, b, func(db *WebhookDB) {
		if n := countEvents(t, db); n != 1 {
			t.Errorf("B holds %d events, want 1", n)
		}
		if _, err := db.Event(ctx, evA.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("A's event found in B: %v", err)
		}
		for _, d := range openDeliveries(t, db) {
			if d.TargetID != "tb" || d.EventID != evB.ID {
				t.Errorf("B has a delivery that is not its own: %+v", d)
			}
		}
	})
	if eventPath(t, m, a) == eventPath(t, m, b) {
		t.Error("two webhooks share a file")
	}

	// Straight from the files, not through the manager.
	if err := m.CloseAll(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := rawDB(t, eventPath(t, m, b)).QueryRow("SELECT count(*) FROM events WHERE path LIKE '/hooks/a%'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("B's file holds %d events of A", n)
	}
}

// --- closing ---

func TestCloseAllClosesEverything(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, ManagerOptions{})
	ids := []string{newID(t), newID(t), newID(t)}
	events := map[string]*Event{}
	for _, id := range ids {
		withDB(t, m, id, func(db *WebhookDB) { events[id] = ingestOne(t, db, id[:8], "t") })
	}
	if n := m.OpenCount(); n != 3 {
		t.Fatalf("OpenCount = %d, want 3", n)
	}
	if err := m.CloseAll(ctx); err != nil {
		t.Fatalf("CloseAll: %v", err)
	}
	if n := m.OpenCount(); n != 0 {
		t.Errorf("OpenCount after CloseAll = %d, want 0", n)
	}
	if got := cachedIDs(m); len(got) != 0 {
		t.Errorf("handles still cached after CloseAll: %v", got)
	}
	// SQLite removes the -wal and -shm files when the last connection of a
	// file closes: their absence shows that no connection is left open.
	for _, id := range ids {
		p := eventPath(t, m, id)
		for _, suffix := range []string{"-wal", "-shm"} {
			if fileExists(t, p+suffix) {
				t.Errorf("%s%s still exists after CloseAll: a connection is still open", p, suffix)
			}
		}
	}

	// Reopened on demand with their data...
	withDB(t, m, ids[0], func(db *WebhookDB) {
		if _, err := db.Event(ctx, events[ids[0]].ID); err != nil {
			t.Errorf("event lost across CloseAll: %v", err)
		}
	})
	// ...and deletable.
	for _, id := range ids[1:] {
		if err := m.Delete(ctx, id); err != nil {
			t.Errorf("Delete after CloseAll: %v", err)
		}
		if fileExists(t, eventPath(t, m, id)) {
			t.Errorf("file of %s survived Delete", id)
		}
	}
	if n := m.OpenCount(); n != 1 {
		t.Errorf("OpenCount = %d, want 1", n)
	}
}

func TestCloseWaitsForUsers(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, ManagerOptions{})
	id := newID(t)
	inside, release := make(chan *WebhookDB), make(chan struct{})
	withDone := make(chan error, 1)
	go func() {
		withDone <- m.With(ctx, id, func(db *WebhookDB) error {
			inside <- db
			<-release
			// Still usable: Close has not closed it under us.
			_, err := db.Ingest(&Event{Method: "POST", Path: "/late"}, pendingTo("t"))
			return err
		})
	}()
	db := <-inside

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err := m.Close(short, id)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close while in use = %v, want it to wait until the deadline", err)
	}

	closeDone := make(chan error, 1)
	go func() { closeDone <- m.Close(ctx, id) }()
	select {
	case err := <-closeDone:
		t.Errorf("Close returned (%v) while With was still running", err)
		closeDone <- err
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-withDone; err != nil {
		t.Fatalf("ingest inside With during Close: %v", err)
	}
	if err := <-closeDone; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := m.OpenCount(); n != 0 {
		t.Errorf("OpenCount = %d, want 0", n)
	}
	if _, err := db.Ingest(&Event{Method: "POST", Path: "/stale"}, nil); err == nil {
		t.Error("Ingest through a closed handle succeeded")
	}
	withDB(t, m, id, func(db *WebhookDB) {
		if n := countEvents(t, db); n != 1 {
			t.Errorf("events = %d, want 1", n)
		}
	})
}

// --- bounded open handles ---

func TestEvictionKeepsOpenHandlesBoundedAndClosesLeastRecentlyUsed(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, ManagerOptions{MaxOpen: 2})
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, newID(t))
	}
	A, B, C, D, E := ids[0], ids[1], ids[2], ids[3], ids[4]
	events := map[string]*Event{}
	handles := map[string]*WebhookDB{}

	use := func(id string, wantCached []string, wantSameHandle bool) {
		t.Helper()
		var db *WebhookDB
		withDB(t, m, id, func(d *WebhookDB) {
			db = d
			if events[id] == nil {
				events[id] = ingestOne(t, d, id[:8], "t")
			}
		})
		if n := m.OpenCount(); n > 2 {
			t.Fatalf("after With(%s): OpenCount = %d, want at most 2", id[:8], n)
		}
		if got := cachedIDs(m); !reflect.DeepEqual(got, sorted(wantCached...)) {
			t.Fatalf("after With(%s): cached %v, want %v", id[:8], got, sorted(wantCached...))
		}
		if prev, ok := handles[id]; ok && (prev == db) != wantSameHandle {
			t.Fatalf("With(%s): same handle as before = %v, want %v", id[:8], prev == db, wantSameHandle)
		}
		handles[id] = db
	}

	use(A, []string{A}, false)
	use(B, []string{A, B}, false)
	use(C, []string{B, C}, false) // A least recently used
	use(B, []string{B, C}, true)  // B was kept: same handle, nothing reopened
	use(D, []string{B, D}, false) // C is now the least recently used
	use(B, []string{B, D}, true)
	use(E, []string{B, E}, false)
	use(A, []string{A, E}, false) // evicted A reopens (a new handle); B goes
	if n := m.OpenCount(); n != 2 {
		t.Errorf("OpenCount = %d, want 2", n)
	}

	// Every evicted DB reopens on demand with its data intact.
	for _, id := range ids {
		withDB(t, m, id, func(db *WebhookDB) {
			if n := countEvents(t, db); n != 1 {
				t.Errorf("%s: %d events, want 1", id[:8], n)
			}
			got, err := db.Event(ctx, events[id].ID)
			if err != nil {
				t.Fatalf("%s: event lost after eviction: %v", id[:8], err)
			}
			if got.Path != events[id].Path {
				t.Errorf("%s: path %q, want %q", id[:8], got.Path, events[id].Path)
			}
			if open := openDeliveries(t, db); len(open) != 1 {
				t.Errorf("%s: %d open deliveries, want 1", id[:8], len(open))
			}
		})
		if n := m.OpenCount(); n > 2 {
			t.Fatalf("OpenCount = %d, want at most 2", n)
		}
	}
}

func TestEvictionDoesNotCloseHandleInUse(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, ManagerOptions{MaxOpen: 2})
	held := newID(t)
	others := []string{newID(t), newID(t), newID(t), newID(t)}

	inside, proceed := make(chan *WebhookDB), make(chan struct{})
	heldDone := make(chan error, 1)
	go func() {
		heldDone <- m.With(ctx, held, func(db *WebhookDB) error {
			inside <- db
			<-proceed
			// The other webhooks have forced evictions meanwhile: this
			// handle must still work.
			for i := 0; i < 3; i++ {
				if _, err := db.Ingest(&Event{Method: "POST", Path: fmt.Sprintf("/held/%d", i)}, pendingTo("t")); err != nil {
					return fmt.Errorf("ingest through the held handle: %w", err)
				}
			}
			var n int
			if err := db.file.reader.QueryRowContext(ctx, "SELECT count(*) FROM events").Scan(&n); err != nil {
				return err
			}
			if n != 3 {
				return fmt.Errorf("held handle counts %d events, want 3", n)
			}
			return nil
		})
	}()
	heldDB := <-inside

	// Force evictions from other goroutines while the handle is held.
	var wg sync.WaitGroup
	errs := make(chan error, len(others)*3)
	for round := 0; round < 3; round++ {
		for _, id := range others {
			wg.Add(1)
			go func(id string) {
				defer wg.Done()
				errs <- m.With(ctx, id, func(db *WebhookDB) error {
					_, err := db.Ingest(&Event{Method: "POST", Path: "/other"}, pendingTo("t"))
					return err
				})
			}(id)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("With on another webhook: %v", err)
		}
	}
	if contains(cachedIDs(m), held) {
		// Not required, but with 4 other webhooks and MaxOpen 2 the held one
		// (used least recently) must have been chosen for eviction at least once.
		t.Errorf("held handle was never evicted; cached: %v", cachedIDs(m))
	}

	close(proceed)
	if err := <-heldDone; err != nil {
		t.Fatal(err)
	}
	// Once released, the evicted handle is really closed.
	if err := heldDB.file.reader.PingContext(ctx); err == nil {
		t.Error("the evicted handle still works after its last user let go: it was never closed")
	}
	if n := m.OpenCount(); n > 2 {
		t.Errorf("OpenCount after release = %d, want at most 2", n)
	}
	withDB(t, m, held, func(db *WebhookDB) {
		if db == heldDB {
			t.Error("With handed out the closed handle again")
		}
		if n := countEvents(t, db); n != 3 {
			t.Errorf("held webhook has %d events after reopen, want 3", n)
		}
	})
	for _, id := range others {
		withDB(t, m, id, func(db *WebhookDB) {
			if n := countEvents(t, db); n != 3 {
				t.Errorf("%s: %d events, want 3", id[:8], n)
			}
		})
	}
}

// While an evicted handle waits for its user, eviction must not go on closing
// other, idle handles to make up for it: once the user lets go the cache
// should be full, not emptied.
func TestEvictionOfHandleInUseDoesNotEmptyTheCache(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, ManagerOptions{MaxOpen: 3})
	held, b, c, d := newID(t), newID(t), newID(t), newID(t)

	inside, release := make(chan struct{}), make(chan struct{})
	heldDone := make(chan error, 1)
	go func() {
		heldDone <- m.With(ctx, held, func(*WebhookDB) error {
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside

	hb, hc := handleOf(t, m, b), handleOf(t, m, c)
	handleOf(t, m, d) // over the bound: the held one (least recently used) is evicted
	if got, want := cachedIDs(m), sorted(b, c, d); !reflect.DeepEqual(got, want) {
		t.Errorf("cached %v, want %v", got, want)
	}
	close(release)
	if err := <-heldDone; err != nil {
		t.Fatal(err)
	}
	if n := m.OpenCount(); n != 3 {
		t.Errorf("OpenCount after the held handle was released = %d, want 3 (b, c, d)", n)
	}
	if handleOf(t, m, b) != hb || handleOf(t, m, c) != hc {
		t.Error("idle handles b or c were closed although evicting the held handle was enough")
	}
}

func TestConcurrentWithOnNewIDOpensOnce(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, ManagerOptions{})
	id := newID(t)
	const n = 32
	start := make(chan struct{})
	var (
		wg      sync.WaitGroup
		arrived sync.WaitGroup
		mu      sync.Mutex
		seen    = map[*WebhookDB]int{}
	)
	arrived.Add(n)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs <- m.With(ctx, id, func(db *WebhookDB) error {
				mu.Lock()
				seen[db]++
				mu.Unlock()
				arrived.Done()
				arrived.Wait() // all n hold the DB at the same time
				_, err := db.Ingest(&Event{Method: "POST", Path: "/c"}, nil)
				return err
			})
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("With: %v", err)
		}
	}
	if len(seen) != 1 {
		t.Errorf("%d different handles were opened for one webhook, want 1", len(seen))
	}
	if c := m.OpenCount(); c != 1 {
		t.Errorf("OpenCount = %d, want 1", c)
	}
	withDB(t, m, id, func(db *WebhookDB) {
		if c := countEvents(t, db); c != n {
			t.Errorf("events = %d, want %d", c, n)
		}
	})
}

func TestWithFailsWhenFileCannotBeOpenedAndRecovers(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, ManagerOptions{})
	id := newID(t)
	path := eventPath(t, m, id)
	if err := os.Mkdir(path, 0o750); err != nil { // a directory where the file should be
		t.Fatal(err)
	}
	called := false
	if err := m.With(ctx, id, func(*WebhookDB) error { called = true; return nil }); err == nil {
		t.Fatal("With on a path that is a directory succeeded")
	}
	if called {
		t.Error("With ran its function although the DB could not be opened")
	}
	if n := m.OpenCount(); n != 0 {
		t.Errorf("OpenCount = %d, want 0", n)
	}
	if err := m.Create(ctx, id); err == nil {
		t.Error("Create on a path that is a directory succeeded")
	}
	// The failure is not cached: once the path is free, With works.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	withDB(t, m, id, func(db *WebhookDB) { ingestOne(t, db, "after", "t") })
}

func TestNewWebhookDBManagerValidatesOptions(t *testing.T) {
	if _, err := NewWebhookDBManager(t.TempDir(), ManagerOptions{Synchronous: "off"}); err == nil {
		t.Error(`Synchronous "off" accepted`)
	}
	m, err := NewWebhookDBManager(filepath.Join(t.TempDir(), "a", "b"), ManagerOptions{Synchronous: SynchronousNormal})
	if err != nil {
		t.Fatalf("nested data dir with synchronous normal: %v", err)
	}
	if fi, err := os.Stat(m.dir); err != nil || !fi.IsDir() {
		t.Errorf("data directory not created: %v", err)
	}
	if m.opts.MaxOpen != DefaultMaxOpenEventDBs {
		t.Errorf("default MaxOpen = %d, want %d", m.opts.MaxOpen, DefaultMaxOpenEventDBs)
	}
	withDB(t, m, newID(t), func(db *WebhookDB) {
		var mode int
		if err := db.file.writer.QueryRow("PRAGMA synchronous").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if mode != 1 { // NORMAL
			t.Errorf("PRAGMA synchronous = %d, want 1 (normal)", mode)
		}
	})
	m.CloseAll(context.Background())
}

// A handle evicted while in use is out of the cache but still open: Close,
// Delete and CloseAll must wait for it all the same.
func TestCloseAndCloseAllWaitForHandleEvictedWhileInUse(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, ManagerOptions{MaxOpen: 1})
	held, other := newID(t), newID(t)

	inside, release := make(chan struct{}), make(chan struct{})
	heldDone := make(chan error, 1)
	go func() {
		heldDone <- m.With(ctx, held, func(db *WebhookDB) error {
			close(inside)
			<-release
			_, err := db.Ingest(&Event{Method: "POST", Path: "/held"}, pendingTo("t"))
			return err
		})
	}()
	<-inside
	handleOf(t, m, other) // evicts the held handle; its close is deferred
	if got := cachedIDs(m); !reflect.DeepEqual(got, []string{other}) {
		t.Fatalf("cached %v, want only %s", got, other)
	}

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err := m.Close(short, held)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close of a handle evicted but in use = %v, want it to wait until the deadline", err)
	}

	closeAllDone := make(chan error, 1)
	go func() { closeAllDone <- m.CloseAll(ctx) }()
	select {
	case err := <-closeAllDone:
		t.Errorf("CloseAll returned (%v) while a With was still running; OpenCount %d", err, m.OpenCount())
		closeAllDone <- err
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-heldDone; err != nil {
		t.Fatalf("ingest through the held handle: %v", err)
	}
	if err := <-closeAllDone; err != nil {
		t.Fatalf("CloseAll: %v", err)
	}
	if n := m.OpenCount(); n != 0 {
		t.Errorf("OpenCount after CloseAll = %d, want 0", n)
	}
	p := eventPath(t, m, held)
	if fileExists(t, p+"-wal") {
		t.Errorf("%s-wal exists after CloseAll: a connection is still open", p)
	}
	if err := m.Delete(ctx, held); err != nil {
		t.Fatal(err)
	}
}
