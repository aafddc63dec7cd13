package storage

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

func removeEventDBFiles(t *testing.T, path string) {
	t.Helper()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Remove(p); err != nil {
			t.Fatalf("rm %s: %v", filepath.Base(p), err)
		}
	}
}

// ingestConcurrently runs n ingests into db at once, so that they share
// group-committed batches, and returns their errors.
func ingestConcurrently(db *WebhookDB, n int) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = db.Ingest(&Event{Method: "POST", Path: "/hooks/after-rm"}, pendingTo("t"))
		}()
	}
	wg.Wait()
	return errs
}

// The attack: `rm events-<id>.db*` while Caddy runs; ingests kept answering
// 200 into the unlinked file, and at the next start every one of those
// events was gone. Now a write committed into a removed file fails (ingest
// answers 503, the provider retries), and the next use creates a fresh file
// whose events survive a restart.
func TestIngestIntoRemovedEventDBFailsThenAFreshFileTakesOver(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m, err := NewWebhookDBManager(dir, ManagerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := newID(t)
	path := eventPath(t, m, id)

	err = m.With(ctx, id, func(db *WebhookDB) error {
		ingestOne(t, db, "before", "t")
		removeEventDBFiles(t, path)
		// Three ingests in flight on the handle they already hold, as
		// requests routed just before or during the removal.
		for i, err := range ingestConcurrently(db, 3) {
			if err == nil {
				t.Errorf("ingest %d into the removed file reported success", i)
			} else if !errors.Is(err, ErrEventDBGone) {
				t.Errorf("ingest %d: %v, want ErrEventDBGone", i, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fileExists(t, path) {
		t.Fatal("the failed ingests brought a file back at the path")
	}

	var acked *Event
	withDB(t, m, id, func(db *WebhookDB) { acked = ingestOne(t, db, "after", "t") })
	if !fileExists(t, path) {
		t.Fatal("the ingest after the removal succeeded but no file exists at the path")
	}
	wantPrivate(t, path)

	if err := m.CloseAll(ctx); err != nil {
		t.Fatal(err)
	}
	m2, err := NewWebhookDBManager(dir, ManagerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.CloseAll(ctx)
	withDB(t, m2, id, func(db *WebhookDB) {
		if _, err := db.Event(ctx, acked.ID); err != nil {
			t.Errorf("the event acknowledged after the removal is not there after a restart: %v", err)
		}
		if n := countEvents(t, db); n != 1 {
			t.Errorf("event DB holds %d events after a restart, want 1 (the one acknowledged into the fresh file)", n)
		}
	})
}

// Each request takes its own handle: the one that notices the removal gets
// 503, the next one goes into a fresh file, and no two handles on the path
// are open at once (closing the old one would delete the new -wal by name).
func TestOnlyTheIngestThatNoticesTheRemovalFails(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, ManagerOptions{})
	id := newID(t)
	path := eventPath(t, m, id)
	withDB(t, m, id, func(db *WebhookDB) { ingestOne(t, db, "before", "t") })
	removeEventDBFiles(t, path)

	ingest := func() error {
		return m.With(ctx, id, func(db *WebhookDB) error {
			_, err := db.Ingest(&Event{Method: "POST", Path: "/hooks/x"}, pendingTo("t"))
			return err
		})
	}
	if err := ingest(); !errors.Is(err, ErrEventDBGone) {
		t.Fatalf("first ingest after the removal: %v, want ErrEventDBGone", err)
	}
	for i := range 3 {
		if err := ingest(); err != nil {
			t.Fatalf("ingest %d after the fresh file was opened: %v", i, err)
		}
	}
	if n := m.OpenCount(); n != 1 {
		t.Errorf("OpenCount = %d, want 1 (the dropped handle closed)", n)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if !fileExists(t, p) {
			t.Errorf("%s is missing while the fresh file is open", filepath.Base(p))
		}
	}
	withDB(t, m, id, func(db *WebhookDB) {
		if n := countEvents(t, db); n != 3 {
			t.Errorf("fresh file holds %d events, want 3", n)
		}
	})
}

// Another valid SQLite file moved over the path (or a -wal removed alone)
// is noticed just the same: the handle's writes no longer reach the file
// that the path names, or their last part lives in an unlinked -wal.
func TestIngestNoticesReplacedFileOrRemovedWAL(t *testing.T) {
	cases := []struct {
		name    string
		tamper  func(t *testing.T, path string)
		wantNew bool // the next use opens a file that is not the original
	}{
		{"file replaced by another SQLite file", func(t *testing.T, path string) {
			other := filepath.Join(filepath.Dir(path), "other.db")
			raw, err := sql.Open("sqlite3", "file:"+filepath.ToSlash(other))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := raw.Exec("CREATE TABLE decoy (x); INSERT INTO decoy VALUES (1)"); err != nil {
				t.Fatal(err)
			}
			if err := raw.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(other, path); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"-wal removed", func(t *testing.T, path string) {
			if err := os.Remove(path + "-wal"); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			m := newManager(t, ManagerOptions{})
			id := newID(t)
			path := eventPath(t, m, id)
			var before *Event
			withDB(t, m, id, func(db *WebhookDB) { before = ingestOne(t, db, "before", "t") })
			c.tamper(t, path)
			err := m.With(ctx, id, func(db *WebhookDB) error {
				_, err := db.Ingest(&Event{Method: "POST", Path: "/hooks/x"}, pendingTo("t"))
				return err
			})
			if !errors.Is(err, ErrEventDBGone) {
				t.Fatalf("ingest after tampering: %v, want ErrEventDBGone", err)
			}
			withDB(t, m, id, func(db *WebhookDB) {
				ingestOne(t, db, "after", "t")
				_, err := db.Event(ctx, before.ID)
				if c.wantNew && err == nil {
					t.Error("the event stored before the replacement is in the replacing file")
				}
				// A -wal removed alone: closing the dropped handle
				// checkpointed it into the file, which still had its name.
				if !c.wantNew && err != nil {
					t.Errorf("the event stored before the -wal was removed is lost: %v", err)
				}
				var check string
				if err := db.file.reader.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
					t.Errorf("integrity_check of the file at the path = %q, %v", check, err)
				}
			})
		})
	}
}

// A webhook deleted through the API stays deleted: the dropped handle's
// reopening goes through the path that refuses deleted ids.
func TestDeleteStillWinsOverReopeningARemovedFile(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, ManagerOptions{})
	id := newID(t)
	path := eventPath(t, m, id)
	err := m.With(ctx, id, func(db *WebhookDB) error {
		ingestOne(t, db, "before", "t")
		removeEventDBFiles(t, path)
		if _, err := db.Ingest(&Event{Method: "POST"}, pendingTo("t")); !errors.Is(err, ErrEventDBGone) {
			t.Errorf("ingest into the removed file: %v, want ErrEventDBGone", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Delete(ctx, id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	called := false
	if err := m.With(ctx, id, func(*WebhookDB) error { called = true; return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("With after Delete: %v, want ErrNotFound", err)
	}
	if called || fileExists(t, path) {
		t.Error("a deleted webhook's event DB was opened again")
	}
}

// A handle dropped while another user still holds it (a delivery reading an
// event, say) is closed only when that user lets go; the next handle on the
// path is opened after that, not beside it. Beside it, with only the -wal
// removed, the new handle would share the old -shm, an index of frames of
// the old, unlinked -wal; and closing the old handle would delete the new
// -wal by name.
func TestReopenWaitsForTheDroppedHandlesLastUser(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m, err := NewWebhookDBManager(dir, ManagerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := newID(t)
	path := eventPath(t, m, id)
	var before *Event
	withDB(t, m, id, func(db *WebhookDB) { before = ingestOne(t, db, "before", "t") })

	var (
		mu    sync.Mutex
		order []string
	)
	note := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
	held, release, holderDone := make(chan struct{}), make(chan struct{}), make(chan error)
	go func() {
		holderDone <- m.With(ctx, id, func(db *WebhookDB) error {
			close(held)
			<-release
			note("old handle released")
			return nil
		})
	}()
	<-held
	v, _ := m.handles.Load(id)
	dropped := v.(*eventDBHandle)
	if err := os.Remove(path + "-wal"); err != nil {
		t.Fatal(err)
	}
	err = m.With(ctx, id, func(db *WebhookDB) error {
		_, err := db.Ingest(&Event{Method: "POST"}, pendingTo("t"))
		return err
	})
	if !errors.Is(err, ErrEventDBGone) {
		t.Fatalf("ingest after the -wal was removed: %v, want ErrEventDBGone", err)
	}

	const n = 20
	next := make(chan []string)
	go func() {
		var ids []string
		for i := range n {
			err := m.With(ctx, id, func(db *WebhookDB) error {
				if i == 0 {
					note("new handle used")
				}
				ev := &Event{Method: "POST", Path: "/hooks/next"}
				if _, err := db.Ingest(ev, pendingTo("t")); err != nil {
					return err
				}
				ids = append(ids, ev.ID)
				return nil
			})
			if err != nil {
				t.Errorf("ingest %d after the drop: %v", i, err)
			}
		}
		next <- ids
	}()
	// The next user's new handle is in the cache (it may be opening).
	for {
		if v, ok := m.handles.Load(id); ok && v.(*eventDBHandle) != dropped {
			break
		}
		runtime.Gosched()
	}
	close(release)
	if err := <-holderDone; err != nil {
		t.Fatal(err)
	}
	ids := <-next
	mu.Lock()
	if len(order) != 2 || order[0] != "old handle released" {
		t.Errorf("order = %v, want the old handle released before the new one is used", order)
	}
	mu.Unlock()

	if err := m.CloseAll(ctx); err != nil {
		t.Fatal(err)
	}
	m2, err := NewWebhookDBManager(dir, ManagerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.CloseAll(ctx)
	withDB(t, m2, id, func(db *WebhookDB) {
		for _, evID := range append(ids, before.ID) {
			if _, err := db.Event(ctx, evID); err != nil {
				t.Errorf("acknowledged event %s lost after a restart: %v", evID, err)
			}
		}
		var check string
		if err := db.file.reader.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
			t.Errorf("integrity_check = %q, %v", check, err)
		}
	})
}
