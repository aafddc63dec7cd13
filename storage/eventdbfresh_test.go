package storage

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// schemaOf lists what sqlite_master holds, in order: the schema as SQLite
// itself would rebuild it.
func schemaOf(t *testing.T, db *sql.DB) [][4]string {
	t.Helper()
	rows, err := db.Query("SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_master ORDER BY type, name")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out [][4]string
	for rows.Next() {
		var r [4]string
		if err := rows.Scan(&r[0], &r[1], &r[2], &r[3]); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// A new event DB is a copy of one the migrations made: the same schema, at
// the latest version, and its open commits nothing (it migrated nothing).
func TestNewEventDBIsAFreshCopyAndMigratesNothing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()

	migrated := openForMigration(t, filepath.Join(dir, "migrated.db"))
	if err := migrate(ctx, migrated, eventMigrations); err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(dir, "events-new.db")
	db, err := openWebhookDB(ctx, "w", path, SynchronousFull)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.close() })
	if v := userVersion(t, db.file.writer); v != len(eventMigrations) {
		t.Fatalf("user_version = %d, want %d", v, len(eventMigrations))
	}
	if got, want := schemaOf(t, db.file.writer), schemaOf(t, migrated); !reflect.DeepEqual(got, want) {
		t.Errorf("schema of a new event DB:\n%v\nwant what the migrations make:\n%v", got, want)
	}
	wal, err := os.ReadFile(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if len(wal) >= 32 {
		if n := walCommits(t, wal); n != 0 {
			t.Errorf("opening a new event DB committed %d transactions, want 0 (it should be made at the latest version)", n)
		}
	}
	if _, err := os.Stat(path + ".new"); !os.IsNotExist(err) {
		t.Errorf("the copy's own name is still there: %v", err)
	}
	// The copy works: an event goes in and comes out.
	pending, err := db.Ingest(&Event{Method: "POST", Path: "/p", Body: []byte("{}")}, targetsOf([]string{"t"}, nil))
	if err != nil || len(pending) != 1 {
		t.Fatalf("ingest into a new event DB: %v, %d pending", err, len(pending))
	}
}

// An existing file is never replaced by a fresh copy, and the leftover of
// a copy a crash interrupted (a partial file under the copy's own name) is
// written over, never linked as it was.
func TestNewEventDBNeverReplacesAFileOrUsesAPartialCopy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "events-w.db")
	if err := os.WriteFile(path+".new", []byte("SQLite format 3\x00 but cut short"), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := openWebhookDB(ctx, "w", path, SynchronousFull)
	if err != nil {
		t.Fatalf("open over a leftover partial copy: %v", err)
	}
	if _, err := db.Ingest(&Event{ID: "kept", Method: "POST", Path: "/p", Body: []byte("{}")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.close(); err != nil {
		t.Fatal(err)
	}
	if err := createFreshEventDB(ctx, path); err != nil {
		t.Fatal(err)
	}
	db, err = openWebhookDB(ctx, "w", path, SynchronousFull)
	if err != nil {
		t.Fatal(err)
	}
	defer db.close()
	var n int
	if err := db.file.reader.QueryRow("SELECT count(*) FROM events WHERE id = 'kept'").Scan(&n); err != nil || n != 1 {
		t.Errorf("the event stored before is gone (count %d, %v): an existing file was replaced", n, err)
	}
}

// Opening an event DB through the manager, and writing to it, opens only
// its writer's connection: the readers' is opened when something reads. The
// applier opens files by the thousand under spread load, and each
// connection costs about 2 ms of CPU to open (its schema parsed again).
func TestOpenAndWriteLeaveTheReaderClosed(t *testing.T) {
	m, id, db := openOne(t)
	if _, err := db.Ingest(&Event{Method: "POST", Path: "/p", Body: []byte("{}")}, targetsOf([]string{"t"}, []string{"archive"})); err != nil {
		t.Fatal(err)
	}
	if n := db.file.reader.Stats().OpenConnections; n != 0 {
		t.Errorf("%d reader connections open after an open and a write, want 0", n)
	}
	if _, err := m.Stats(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if n := db.file.reader.Stats().OpenConnections; n != 0 {
		t.Errorf("%d reader connections open after reading the webhook's figures (cached at open), want 0", n)
	}
}

// What a process killed while making or copying a fresh event DB left in
// the data directory is removed when the next process makes its own.
func TestFreshEventDBLeftoversAreRemoved(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	made := filepath.Join(dir, freshEventDBDirPattern+"123")
	if err := os.Mkdir(made, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(made, "events.db"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	copied := filepath.Join(dir, "events-"+newID(t)+".db.new")
	if err := os.WriteFile(copied, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	freshEventDB.mu.Lock()
	kept := freshEventDB.bytes
	freshEventDB.bytes = nil // as in a new process
	freshEventDB.mu.Unlock()
	t.Cleanup(func() {
		freshEventDB.mu.Lock()
		if freshEventDB.bytes == nil {
			freshEventDB.bytes = kept
		}
		freshEventDB.mu.Unlock()
	})
	if err := createFreshEventDB(ctx, filepath.Join(dir, "events-"+newID(t)+".db")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{made, copied} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there (%v)", filepath.Base(p), err)
		}
	}
	left, _ := filepath.Glob(filepath.Join(dir, freshEventDBDirPattern+"*"))
	if len(left) != 0 {
		t.Errorf("the directory the fresh event DB was made in is still there: %v", left)
	}
}
