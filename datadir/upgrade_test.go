package datadir

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// setUserVersion sets the schema version of the SQLite file at path, as a
// newer caddy-webhooker's migrations would.
func setUserVersion(t *testing.T, path string, version int) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", version)); err != nil {
		t.Fatal(err)
	}
}

// TestOpenRefusesANewerMainDB: a data directory whose main DB a newer
// version wrote is refused, saying so, and let go of: Open returned the
// error by way of a nil pointer dereference (its clean-up read the Dir
// after the failed return had set it to nil), and kept the lock.
func TestOpenRefusesANewerMainDB(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	setUserVersion(t, filepath.Join(dir, storage.MainDBFile), 999)
	for range 2 { // the second finds the lock let go of
		_, err := Open(dir, Options{})
		if err == nil || !strings.Contains(err.Error(), "schema version 999 is newer than this build knows") {
			t.Fatalf("open of a data_dir with a newer main DB: %v, want it refused as newer", err)
		}
	}
}

// TestNewerEventDBIsRefused: an event DB a newer version wrote is refused
// when it is opened, saying so, and the rest of the data directory runs.
func TestNewerEventDBIsRefused(t *testing.T) {
	newer, other := keptWebhook("newer", 0), keptWebhook("other", 0)
	decl := &Declaration{Webhooks: []*storage.Webhook{newer, other}}
	dir := t.TempDir()
	d, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Declare(decl); err != nil {
		t.Fatal(err)
	}
	ingestAt(t, d, "newer-in", time.Now())
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	setUserVersion(t, filepath.Join(dir, "events-"+newer.ID+".db"), 999)
	r := openStartedAt(t, dir, decl)
	_, err = r.events.Stats(context.Background(), newer.ID)
	if err == nil || !strings.Contains(err.Error(), "schema version 999 is newer than this build knows") {
		t.Errorf("reading the newer event DB: %v, want it refused as newer", err)
	}
	ingestAt(t, r, "other-in", time.Now())
	if n := eventCount(t, r, other.ID); n != 1 {
		t.Errorf("%d events of the other webhook, want 1", n)
	}
}
