package storage

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// openForMigration opens path the way our files are opened and returns the
// writer connection that migrate runs on.
func openForMigration(t *testing.T, path string) *sql.DB {
	t.Helper()
	f, err := openSQLiteFile(path, "")
	if err != nil {
		t.Fatalf("openSQLiteFile: %v", err)
	}
	t.Cleanup(func() { _ = f.close() })
	return f.writer
}

// testMigrations is a schema history of three steps, the second of which
// changes a table that already holds data.
var testMigrations = []migration{
	{name: "items", sql: `CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
		CREATE INDEX items_name ON items (name);`},
	{name: "items.weight", sql: `ALTER TABLE items ADD COLUMN weight INTEGER NOT NULL DEFAULT 7;`},
	{name: "tags", sql: `CREATE TABLE tags (item_id INTEGER NOT NULL REFERENCES items (id), tag TEXT NOT NULL);`},
}

func TestMigrateFreshFileToLatest(t *testing.T) {
	db := openForMigration(t, filepath.Join(t.TempDir(), "fresh.db"))
	if v := userVersion(t, db); v != 0 {
		t.Fatalf("fresh file at version %d", v)
	}
	if err := migrate(context.Background(), db, testMigrations); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if v := userVersion(t, db); v != len(testMigrations) {
		t.Errorf("user_version = %d, want %d", v, len(testMigrations))
	}
	if got := tableNames(t, db); strings.Join(got, ",") != "items,tags" {
		t.Errorf("tables = %v, want items, tags", got)
	}
	// Again: nothing to do. Re-running the first step would fail (the table exists).
	if err := migrate(context.Background(), db, testMigrations); err != nil {
		t.Fatalf("migrate of an up-to-date file: %v", err)
	}
	if v := userVersion(t, db); v != len(testMigrations) {
		t.Errorf("user_version after a second migrate = %d, want %d", v, len(testMigrations))
	}
}

func TestMigrateExistingFileStepByStepKeepsData(t *testing.T) {
	ctx := context.Background()
	db := openForMigration(t, filepath.Join(t.TempDir(), "old.db"))
	if err := migrate(ctx, db, testMigrations[:1]); err != nil {
		t.Fatalf("migrate to 1: %v", err)
	}
	if v := userVersion(t, db); v != 1 {
		t.Fatalf("user_version = %d, want 1", v)
	}
	for _, name := range []string{"first", "second"} {
		if _, err := db.ExecContext(ctx, "INSERT INTO items (name) VALUES (?)", name); err != nil {
			t.Fatal(err)
		}
	}

	if err := migrate(ctx, db, testMigrations[:2]); err != nil {
		t.Fatalf("migrate 1 -> 2: %v", err)
	}
	if v := userVersion(t, db); v != 2 {
		t.Errorf("user_version = %d, want 2", v)
	}
	rows, err := db.QueryContext(ctx, "SELECT name, weight FROM items ORDER BY id")
	if err != nil {
		t.Fatalf("the new column is not there: %v", err)
	}
	var got []string
	for rows.Next() {
		var (
			name   string
			weight int
		)
		if err := rows.Scan(&name, &weight); err != nil {
			t.Fatal(err)
		}
		if weight != 7 {
			t.Errorf("%s: weight %d, want the default 7", name, weight)
		}
		got = append(got, name)
	}
	rows.Close()
	if strings.Join(got, ",") != "first,second" {
		t.Errorf("rows after migration = %v, want first, second", got)
	}

	if err := migrate(ctx, db, testMigrations); err != nil {
		t.Fatalf("migrate 2 -> 3: %v", err)
	}
	if v := userVersion(t, db); v != 3 {
		t.Errorf("user_version = %d, want 3", v)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO tags (item_id, tag) VALUES (1, 'x')"); err != nil {
		t.Errorf("table of migration 3 unusable: %v", err)
	}
}

// The real event schema, followed by a later migration as a future release
// would add it: an event DB written by this build is brought up to date with
// its events intact.
func TestEventDBUpgradedByLaterMigrationKeepsEvents(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events-x.db")
	db, err := openWebhookDB(ctx, "x", path, "")
	if err != nil {
		t.Fatalf("openWebhookDB: %v", err)
	}
	ev := ingestOne(t, db, "old", "t1", "t2")
	if err := db.close(); err != nil {
		t.Fatal(err)
	}

	later := append(append([]migration(nil), eventMigrations...), migration{
		name: "events.tag",
		sql:  `ALTER TABLE events ADD COLUMN tag TEXT NOT NULL DEFAULT 'untagged'; CREATE INDEX events_tag ON events (tag);`,
	})
	w := openForMigration(t, path)
	if err := migrate(ctx, w, later); err != nil {
		t.Fatalf("migrate with the later list: %v", err)
	}
	if v := userVersion(t, w); v != len(later) {
		t.Errorf("user_version = %d, want %d", v, len(later))
	}
	var (
		path2, tag string
		deliveries int
	)
	if err := w.QueryRowContext(ctx, "SELECT path, tag FROM events WHERE id = ?", ev.ID).Scan(&path2, &tag); err != nil {
		t.Fatalf("event lost by the migration: %v", err)
	}
	if path2 != ev.Path || tag != "untagged" {
		t.Errorf("event after migration: path %q tag %q, want %q untagged", path2, tag, ev.Path)
	}
	if err := w.QueryRowContext(ctx, "SELECT count(*) FROM deliveries WHERE event_id = ?", ev.ID).Scan(&deliveries); err != nil || deliveries != 2 {
		t.Errorf("deliveries after migration = %d, %v; want 2", deliveries, err)
	}

	// This build does not know the later migration: it refuses the file.
	if _, err := openWebhookDB(ctx, "x", path, ""); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("openWebhookDB of a newer file = %v, want a refusal naming a newer version", err)
	}
}

func TestMigrateRefusesNewerVersion(t *testing.T) {
	ctx := context.Background()
	db := openForMigration(t, filepath.Join(t.TempDir(), "new.db"))
	if err := migrate(ctx, db, testMigrations); err != nil {
		t.Fatal(err)
	}
	err := migrate(ctx, db, testMigrations[:2])
	if err == nil {
		t.Fatal("migrate with fewer migrations than the file's version succeeded")
	}
	for _, want := range []string{"schema version 3", "newer", "(2)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if v := userVersion(t, db); v != 3 {
		t.Errorf("user_version after refusal = %d, want 3 (unchanged)", v)
	}
}

func TestOpenRefusesFilesFromNewerBuild(t *testing.T) {
	ctx := context.Background()
	setVersion := func(t *testing.T, path string, v int) {
		t.Helper()
		raw := rawDB(t, path)
		if _, err := raw.Exec(fmt.Sprintf("CREATE TABLE IF NOT EXISTS future (x); PRAGMA user_version = %d", v)); err != nil {
			t.Fatal(err)
		}
		if err := raw.Close(); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("event db", func(t *testing.T) {
		m := newManager(t, ManagerOptions{})
		id := newID(t)
		path := eventPath(t, m, id)
		setVersion(t, path, 99)
		called := false
		err := m.With(ctx, id, func(*WebhookDB) error { called = true; return nil })
		if err == nil || !strings.Contains(err.Error(), "newer") {
			t.Errorf("With on a file of a newer build = %v, want a refusal", err)
		}
		if called {
			t.Error("With ran its function on a refused file")
		}
		if err := m.Create(ctx, id); err == nil {
			t.Error("Create on a file of a newer build succeeded")
		}
		if v := userVersion(t, rawDB(t, path)); v != 99 {
			t.Errorf("user_version = %d after refusal, want 99", v)
		}
	})
	t.Run("main db", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, MainDBFile)
		setVersion(t, path, 99)
		db, err := OpenMainDB(ctx, dir, "")
		if err == nil {
			db.Close()
			t.Fatal("OpenMainDB on a file of a newer build succeeded")
		}
		if !strings.Contains(err.Error(), "newer") {
			t.Errorf("error %q does not say the file is newer", err)
		}
		if v := userVersion(t, rawDB(t, path)); v != 99 {
			t.Errorf("user_version = %d after refusal, want 99", v)
		}
	})
}

func TestFailingMigrationLeavesVersionUnchanged(t *testing.T) {
	ctx := context.Background()
	db := openForMigration(t, filepath.Join(t.TempDir(), "fail.db"))
	if err := migrate(ctx, db, testMigrations[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO items (name) VALUES ('kept')"); err != nil {
		t.Fatal(err)
	}

	broken := []migration{
		testMigrations[0],
		// Its first statement succeeds, its second fails: neither may stay.
		{name: "half done", sql: `CREATE TABLE half (x INTEGER); UPDATE items SET name = 'changed'; INSERT INTO missing VALUES (1);`},
		testMigrations[2],
	}
	err := migrate(ctx, db, broken)
	if err == nil {
		t.Fatal("a failing migration reported success")
	}
	if !strings.Contains(err.Error(), "migration 2") || !strings.Contains(err.Error(), "half done") {
		t.Errorf("error %q does not name migration 2 (half done)", err)
	}
	if v := userVersion(t, db); v != 1 {
		t.Errorf("user_version after a failed migration = %d, want 1", v)
	}
	if got := tableNames(t, db); strings.Join(got, ",") != "items" {
		t.Errorf("tables after a failed migration = %v, want only items: its partial work was not rolled back", got)
	}
	var name string
	if err := db.QueryRowContext(ctx, "SELECT name FROM items").Scan(&name); err != nil || name != "kept" {
		t.Errorf("data after a failed migration = %q, %v; want kept", name, err)
	}

	// Fixed in the next build: the same file migrates.
	if err := migrate(ctx, db, testMigrations); err != nil {
		t.Fatalf("migrate after the fix: %v", err)
	}
	if v := userVersion(t, db); v != 3 {
		t.Errorf("user_version = %d, want 3", v)
	}
}

func TestFailingFirstMigrationLeavesFileEmpty(t *testing.T) {
	db := openForMigration(t, filepath.Join(t.TempDir(), "first.db"))
	err := migrate(context.Background(), db, []migration{{name: "bad", sql: "CREATE TABLE ok (x); CREATE TABLE"}})
	if err == nil {
		t.Fatal("a syntax error reported success")
	}
	if v := userVersion(t, db); v != 0 {
		t.Errorf("user_version = %d, want 0", v)
	}
	if got := tableNames(t, db); len(got) != 0 {
		t.Errorf("tables = %v, want none", got)
	}
}

func TestMainDBFromVersion1GainsRetentionDaysAndKeepsRows(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, MainDBFile)

	// A main DB as the first release wrote it.
	f, err := openSQLiteFile(path, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, f.writer, mainMigrations[:1]); err != nil {
		t.Fatalf("migrate to version 1: %v", err)
	}
	for _, q := range []string{
		`INSERT INTO users (id, name, created_at) VALUES ('u1', 'alice', 1)`,
		`INSERT INTO api_keys (id, user_id, name, prefix, hash, created_at) VALUES ('k1', 'u1', 'ci', 'whk_abcdefgh', x'00', 2)`,
		`INSERT INTO webhooks (id, user_id, name, source, active, created_at, updated_at)
			VALUES ('6f1c2e9a-0000-4000-8000-000000000001', 'u1', 'old', 'api', 1, 3, 3)`,
		`INSERT INTO entrypoints (id, webhook_id, key, active, created_at, updated_at)
			VALUES ('e1', '6f1c2e9a-0000-4000-8000-000000000001', 'old-key', 1, 4, 4)`,
		`INSERT INTO targets (id, webhook_id, name, type, options, active, created_at, updated_at)
			VALUES ('t1', '6f1c2e9a-0000-4000-8000-000000000001', 'keep', 'database', '{}', 1, 5, 5)`,
	} {
		if _, err := f.writer.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := f.close(); err != nil {
		t.Fatal(err)
	}

	db, err := OpenMainDB(ctx, dir, "")
	if err != nil {
		t.Fatalf("OpenMainDB of a version 1 file: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if v := userVersion(t, db.file.reader); v != len(mainMigrations) {
		t.Errorf("user_version = %d, want %d (every migration)", v, len(mainMigrations))
	}
	w, err := db.Webhook(ctx, "6f1c2e9a-0000-4000-8000-000000000001")
	if err != nil {
		t.Fatalf("the webhook of version 1: %v", err)
	}
	if w.Name != "old" || w.UserID != "u1" || w.RetentionDays != 0 || w.CreatedAt.UnixNano() != 3 ||
		len(w.Entrypoints) != 1 || w.Entrypoints[0].Key != "old-key" || len(w.Targets) != 1 || w.Targets[0].Name != "keep" {
		t.Errorf("webhook after the migration = %+v", w)
	}
	if r, ok := snapshot(t, db).Route("old-key"); !ok || len(r.Targets) != 1 {
		t.Errorf("old-key routes to %+v, %v", r, ok)
	}
	if keys, err := db.APIKeys(ctx, "u1"); err != nil || len(keys) != 1 || keys[0].Prefix != "whk_abcdefgh" {
		t.Errorf("API keys after the migration = %+v, %v", keys, err)
	}
	got, err := db.UpdateWebhook(ctx, w.ID, WebhookPatch{RetentionDays: intp(90)})
	if err != nil || got.RetentionDays != 90 {
		t.Errorf("setting retention on a migrated webhook = %+v, %v", got, err)
	}
}

// TestCreateAndFirstUseOfAFreshFileAtOnce: a webhook's creation and its
// first use (the recovery scan, an ingest) can reach a fresh event DB at the
// same moment. Create used to open a writer of its own beside the manager's:
// both read schema version 0 and ran migration 1, and one failed with
// "table events already exists".
func TestCreateAndFirstUseOfAFreshFileAtOnce(t *testing.T) {
	m, err := NewWebhookDBManager(t.TempDir(), ManagerOptions{Synchronous: SynchronousNormal})
	if err != nil {
		t.Fatal(err)
	}
	defer m.CloseAll(context.Background())
	for round := range 20 {
		id := uuid.NewString()
		errs := make(chan error, 4)
		for i := range 4 {
			go func() {
				if i%2 == 0 {
					errs <- m.Create(context.Background(), id)
					return
				}
				errs <- m.With(context.Background(), id, func(db *WebhookDB) error {
					_, err := db.Ingest(&Event{Method: "POST", Path: "/first"}, pendingTo("t"))
					return err
				})
			}()
		}
		for range 4 {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
}

// A fresh event DB is made in one commit: one fsync, not one per migration
// (the applier makes a webhook's file at its first event, by the thousand
// when load spreads over new webhooks). Counted in the -wal, whose frames
// each say whether they end a transaction.
func TestMigrateFreshFileInOneCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fresh.db")
	db := openForMigration(t, path)
	if err := migrate(context.Background(), db, eventMigrations); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if v := userVersion(t, db); v != len(eventMigrations) {
		t.Fatalf("user_version = %d, want %d", v, len(eventMigrations))
	}
	wal, err := os.ReadFile(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if got := walCommits(t, wal); got != 1 {
		t.Errorf("making a fresh event DB took %d commits, want 1", got)
	}
}

// walCommits counts the frames of a WAL file that end a transaction (a
// non-zero database size in the frame header), among those of its current
// generation (the header's salts).
func walCommits(t *testing.T, wal []byte) int {
	t.Helper()
	if len(wal) < 32 {
		t.Fatalf("WAL of %d bytes has no header", len(wal))
	}
	pageSize := int(binary.BigEndian.Uint32(wal[8:12]))
	salts := wal[16:24]
	commits := 0
	for off := 32; off+24+pageSize <= len(wal); off += 24 + pageSize {
		frame := wal[off : off+24]
		if !bytes.Equal(frame[8:16], salts) {
			break
		}
		if binary.BigEndian.Uint32(frame[4:8]) != 0 {
			commits++
		}
	}
	return commits
}
