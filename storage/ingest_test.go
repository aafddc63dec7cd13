package storage

import (
	"context"
	"database/sql"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// Deliveries to database targets are stored delivered, with their one
// attempt, in the ingest transaction; only the others come back pending.
func TestIngestStoresDatabaseDeliveriesDelivered(t *testing.T) {
	ctx := context.Background()
	_, _, db := openOne(t)
	before := db.commits.transactions.Load()
	pending, err := db.Ingest(&Event{Method: "POST", Path: "/p", Body: []byte("{}")}, targetsOf([]string{"http-target"}, []string{"archive", "audit-copy"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := db.commits.transactions.Load() - before; got != 1 {
		t.Errorf("ingest took %d transactions, want 1", got)
	}
	if len(pending) != 1 || pending[0].TargetID != "http-target" || pending[0].Status != DeliveryPending {
		t.Fatalf("pending deliveries = %+v, want the http target's only", pending)
	}
	all, err := db.Deliveries(ctx, pending[0].EventID)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 {
		t.Fatalf("%d deliveries stored, want 3", len(all))
	}
	for _, d := range all {
		results, err := db.DeliveryResults(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		switch d.TargetID {
		case "http-target":
			if d.Status != DeliveryPending || d.Attempts != 0 || len(results) != 0 {
				t.Errorf("http delivery = %+v with %d results, want pending, untried", d, len(results))
			}
		default:
			if d.Status != DeliveryDelivered || d.Attempts != 1 || len(results) != 1 || results[0].Attempt != 1 {
				t.Errorf("kept delivery to %s = %+v with %d results, want delivered after 1 recorded attempt", d.TargetID, d, len(results))
			}
		}
	}
	open, err := db.OpenDeliveries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 1 {
		t.Errorf("%d open deliveries, want 1: recovery must not see the kept ones", len(open))
	}
}

// A delivery to a database target is one row: its one attempt is not
// written (it was a third of every ingest's rows), yet it is listed as it
// was stored before, so that the API and the UI show the same.
func TestDatabaseDeliveryWritesNoAttemptRow(t *testing.T) {
	ctx := context.Background()
	_, _, db := openOne(t)
	ev := &Event{Method: "POST", Path: "/p", Body: []byte("{}")}
	if _, err := db.Ingest(ev, targetsOf([]string{"http-target"}, []string{"archive"})); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db, `SELECT count(*) FROM delivery_attempts`); n != 0 {
		t.Errorf("%d attempt rows written at ingest, want 0", n)
	}
	all, err := db.Deliveries(ctx, ev.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range all {
		results, err := db.DeliveryResults(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		if d.TargetID == "http-target" {
			if len(results) != 0 {
				t.Errorf("pending delivery lists %d attempts, want 0", len(results))
			}
			continue
		}
		want := []DeliveryResult{{DeliveryID: d.ID, Attempt: 1, StartedAt: time.Unix(0, ev.ReceivedAt.UnixNano())}}
		if !reflect.DeepEqual(results, want) {
			t.Errorf("kept delivery lists %+v, want %+v (what its attempt row held)", results, want)
		}
	}
}

// A file from before keptDeliveriesMigration keeps every attempt it
// recorded, its kept deliveries' included, each listed once; attempts
// recorded after the migration, and through the old table name, are
// stored; pruning still removes an event's attempts with it.
func TestEventDBFromBeforeKeptDeliveriesMigrates(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events-x.db")
	f, err := openSQLiteFile(path, "")
	if err != nil {
		t.Fatal(err)
	}
	var old []migration
	for i, m := range eventMigrations {
		if m.name == keptDeliveriesMigration.name {
			old = eventMigrations[:i]
		}
	}
	if len(old) == 0 || old[len(old)-1].name != "events.verified" {
		t.Fatalf("the migration before keptDeliveriesMigration is %q: this test builds the wrong old file", old[len(old)-1].name)
	}
	if err := migrate(ctx, f.writer, old); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO events (id, entrypoint_id, entrypoint_key, method, path, headers, body, body_size, received_at)
			VALUES ('ev1', 'ep', 'key', 'POST', '/hooks/key', '{}', x'7b7d', 2, 10)`,
		`INSERT INTO deliveries (id, event_id, target_id, status, attempts, created_at, updated_at)
			VALUES ('d-kept', 'ev1', 'archive', 'delivered', 1, 10, 10)`,
		`INSERT INTO delivery_results (delivery_id, attempt, started_at, duration_ns, status_code, error)
			VALUES ('d-kept', 1, 10, 0, 0, '')`,
		`INSERT INTO deliveries (id, event_id, target_id, status, attempts, created_at, updated_at)
			VALUES ('d-http', 'ev1', 'http', 'retrying', 2, 10, 12)`,
		`INSERT INTO delivery_results (delivery_id, attempt, started_at, duration_ns, status_code, error, response_body)
			VALUES ('d-http', 1, 11, 5, 500, 'target answered 500', x'6f6f7073')`,
		`INSERT INTO delivery_results (delivery_id, attempt, started_at, duration_ns, status_code, error)
			VALUES ('d-http', 2, 12, 6, 502, 'target answered 502')`,
	} {
		if _, err := f.writer.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := f.close(); err != nil {
		t.Fatal(err)
	}

	db, err := openWebhookDB(ctx, "x", path, "")
	if err != nil {
		t.Fatalf("open the old file: %v", err)
	}
	t.Cleanup(func() { _ = db.close() })
	kept, err := db.DeliveryResults(ctx, "d-kept")
	if err != nil {
		t.Fatal(err)
	}
	if want := []DeliveryResult{{DeliveryID: "d-kept", Attempt: 1, StartedAt: time.Unix(0, 10)}}; !reflect.DeepEqual(kept, want) {
		t.Errorf("old kept delivery lists %+v, want its one stored attempt %+v", kept, want)
	}
	if err := db.RecordAttempt(ctx, DeliveryResult{DeliveryID: "d-http", Attempt: 3, StartedAt: time.Unix(0, 13),
		StatusCode: 200}, DeliveryOutcome{Status: DeliveryDelivered}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.file.writer.ExecContext(ctx, `INSERT INTO delivery_results (delivery_id, attempt, started_at, duration_ns)
		VALUES ('d-http', 4, 14, 1)`); err != nil {
		t.Fatalf("insert through the old name: %v", err)
	}
	http, err := db.DeliveryResults(ctx, "d-http")
	if err != nil {
		t.Fatal(err)
	}
	var codes []int
	for _, r := range http {
		codes = append(codes, r.StatusCode)
	}
	if !reflect.DeepEqual(codes, []int{500, 502, 200, 0}) || string(http[0].ResponseBody) != "oops" || http[3].Error != "" {
		t.Errorf("http delivery lists %+v, want its 2 old attempts, then the 2 new ones", http)
	}
	if n, err := db.Prune(ctx, time.Unix(0, 11)); err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want the one event", n, err)
	}
	if n := countRows(t, db, `SELECT count(*) FROM delivery_results`); n != 0 {
		t.Errorf("%d attempts listed after their event was pruned, want 0", n)
	}
}

// A new event DB has 16 KiB pages (a 64 KiB body in 4 overflow pages, not
// 16); a file made with 4 KiB pages keeps them and opens as before.
func TestEventDBPageSize(t *testing.T) {
	ctx := context.Background()
	_, _, db := openOne(t)
	if ps := pageSize(t, db.file.writer); ps != 16384 {
		t.Errorf("page_size of a new event DB = %d, want 16384", ps)
	}

	path := filepath.Join(t.TempDir(), "events-old.db")
	raw := rawDB(t, path)
	for _, q := range []string{"PRAGMA page_size = 4096", "PRAGMA journal_mode = wal", "CREATE TABLE before (x)"} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	old, err := openWebhookDB(ctx, "old", path, "")
	if err != nil {
		t.Fatalf("open a file with 4 KiB pages: %v", err)
	}
	t.Cleanup(func() { _ = old.close() })
	if ps := pageSize(t, old.file.writer); ps != 4096 {
		t.Errorf("page_size of a file made with 4 KiB pages = %d after opening, want 4096", ps)
	}
	ingestOne(t, old, "in-old", "t")
}

func pageSize(t *testing.T, db interface {
	QueryRow(string, ...any) *sql.Row
}) int {
	t.Helper()
	var ps int
	if err := db.QueryRow("PRAGMA page_size").Scan(&ps); err != nil {
		t.Fatal(err)
	}
	return ps
}
