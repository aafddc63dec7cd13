package datadir

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/ncruces/go-sqlite3/driver"

	"github.com/webhooker/caddy-webhooker/storage"
)

// keptWebhook declares a webhook named name that keeps its events for
// retentionDays, with a database target.
func keptWebhook(name string, retentionDays int) *storage.Webhook {
	id := storage.DeclaredWebhookID(name)
	key := name + "-in"
	return &storage.Webhook{
		ID: id, Name: name, Source: storage.SourceCaddyfile, Active: true, RetentionDays: retentionDays,
		Entrypoints: []storage.Entrypoint{{ID: storage.DeclaredEntrypointID(id, key), WebhookID: id, Key: key, Active: true}},
		Targets: []storage.Target{{ID: storage.DeclaredTargetID(id, "archive"), WebhookID: id,
			Name: "archive", Type: storage.TargetDatabase, Active: true}},
	}
}

// holdWriteLock takes the write lock of the SQLite file at path from
// another connection, as another process would, until the test ends or the
// returned function lets it go.
func holdWriteLock(t *testing.T, path string) (letGo func()) {
	t.Helper()
	ctx := context.Background()
	db, err := sql.Open("sqlite3", "file:"+filepath.ToSlash(path)+"?_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatalf("take the write lock of %s: %v", path, err)
	}
	done := false
	letGo = func() {
		if done {
			return
		}
		done = true
		_, _ = conn.ExecContext(ctx, "ROLLBACK")
		_ = conn.Close()
		_ = db.Close()
	}
	t.Cleanup(letGo)
	return letGo
}

// A pruning that cannot get its event DB's write lock (another process holds
// it) waited up to SQLite's busy timeout, and Close waited for it without
// bound: a shutdown hung behind it. Close now cuts prunings short and
// returns within its grace period; the storage is closed and the data
// directory can be opened again.
func TestCloseIsNotHeldUpByAPruning(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := Open(dir, Options{Synchronous: storage.SynchronousNormal})
	if err != nil {
		t.Fatal(err)
	}
	wh := keptWebhook("kept", 1)
	if err := d.Declare(&Declaration{Webhooks: []*storage.Webhook{wh}}); err != nil {
		t.Fatal(err)
	}
	// Made before the start, whose recovery scan would open it at the same
	// time.
	if err := d.events.Create(ctx, wh.ID); err != nil {
		t.Fatal(err)
	}
	d.Start()
	path, err := d.events.EventDBPath(wh.ID)
	if err != nil {
		t.Fatal(err)
	}
	letGo := holdWriteLock(t, path)
	route, ok := d.Route(wh.Entrypoints[0].Key)
	if !ok {
		t.Fatal("the declared webhook has no route")
	}
	// An event come of age makes a pruning due at once, which waits for the
	// write lock. (The ingest itself is not made: it would wait too.)
	pruning := make(chan string, 1)
	d.retention.beforePrune = func(id string) { pruning <- id }
	d.retention.ingested(route.Webhook, time.Now().Add(-48*time.Hour))
	<-pruning

	const grace = 200 * time.Millisecond
	closeCtx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	start := time.Now()
	err = d.Close(closeCtx)
	elapsed := time.Since(start)
	t.Logf("Close took %s: %v", elapsed, err)
	// The busy timeout is 10 s: a Close that waited for the pruning takes
	// that long. Within the grace period, plus what a loaded machine adds.
	if elapsed > grace+3*time.Second {
		t.Errorf("Close took %s with a grace period of %s: it waited for the pruning", elapsed, grace)
	}
	letGo()
	// The pruning cut short is over, whether Close saw it end or not.
	d.retention.running.Wait()

	again, err := Open(dir, Options{Synchronous: storage.SynchronousNormal})
	if err != nil {
		t.Fatalf("open the data directory again after Close: %v", err)
	}
	if err := again.Close(ctx); err != nil {
		t.Errorf("close again: %v", err)
	}
}
