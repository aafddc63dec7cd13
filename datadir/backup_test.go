package datadir

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/webhooker/caddy-webhooker/storage"
)

// idTarget is an http target that answers 200 and tells when it has seen n
// distinct deliveries (webhook-id).
type idTarget struct {
	*httptest.Server
	mu   sync.Mutex
	seen map[string]bool
	want int
	got  chan struct{} // closed once want distinct ids came (await)
}

func newIDTarget(t *testing.T) *idTarget {
	t.Helper()
	it := &idTarget{seen: make(map[string]bool), want: -1}
	it.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		it.mu.Lock()
		it.seen[r.Header.Get("webhook-id")] = true
		if len(it.seen) == it.want {
			close(it.got)
		}
		it.mu.Unlock()
	}))
	t.Cleanup(it.Close)
	return it
}

// await waits until n distinct deliveries came.
func (it *idTarget) await(t *testing.T, n int) {
	t.Helper()
	it.mu.Lock()
	if len(it.seen) >= n {
		it.mu.Unlock()
		return
	}
	it.want, it.got = n, make(chan struct{})
	got := it.got
	it.mu.Unlock()
	select {
	case <-got:
	case <-time.After(30 * time.Second):
		it.mu.Lock()
		defer it.mu.Unlock()
		t.Fatalf("the target got %d distinct deliveries, want %d", len(it.seen), n)
	}
}

// ackedEvent is an event whose Ingest returned: acknowledged.
type ackedEvent struct{ webhookID, eventID string }

// TestBackupUnderLoadRestores: a backup taken while 8 goroutines ingest
// into 3 webhooks holds every event acknowledged before it began; a data
// directory opened on a copy of it counts the manifest's events and
// deliveries, and delivers what was open.
func TestBackupUnderLoadRestores(t *testing.T) {
	target := newIDTarget(t)
	var decl Declaration
	for _, name := range []string{"alpha", "beta", "gamma"} {
		decl.Webhooks = append(decl.Webhooks, declaredWebhook(name,
			httpTarget("out", target.URL, 3), storage.Target{Name: "archive", Type: storage.TargetDatabase}))
	}
	d, err := Open(t.TempDir(), Options{Synchronous: storage.SynchronousNormal})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Declare(&decl); err != nil {
		t.Fatal(err)
	}
	d.Start()
	ctx := context.Background()
	// Paused, so that every http delivery is still open in the backup and
	// the restored copy has them all to send.
	for _, wh := range decl.Webhooks {
		if _, err := d.SetTargetPaused(ctx, wh, wh.Targets[0].ID, true); err != nil {
			t.Fatal(err)
		}
	}

	var (
		mu    sync.Mutex
		acked []ackedEvent
		stop  = make(chan struct{})
		load  sync.WaitGroup
		count atomic.Int64
	)
	for g := range 8 {
		load.Add(1)
		go func() {
			defer load.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				wh := decl.Webhooks[(g+i)%len(decl.Webhooks)]
				route, _ := d.Route(wh.Entrypoints[0].Key)
				ev := &storage.Event{Method: "POST", Path: "/" + wh.Name, Body: []byte(`{"n":1}`)}
				if err := d.Ingest(ctx, route, ev); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, ackedEvent{wh.ID, ev.ID})
				mu.Unlock()
				count.Add(1)
			}
		}()
	}
	for count.Load() < 1500 {
		time.Sleep(time.Millisecond) // waits for load to build up, proves nothing
	}
	mu.Lock()
	before := append([]ackedEvent(nil), acked...)
	mu.Unlock()
	dir := filepath.Join(t.TempDir(), "backup")
	m, err := d.Backup(ctx, dir, BackupOptions{})
	during := count.Load() - int64(len(before))
	close(stop)
	load.Wait()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d events acknowledged before the backup, %d while it ran; the backup holds %d events, %d deliveries (%d open) in %d files, %v",
		len(before), during, m.Events, m.Deliveries, m.OpenDeliveries, len(m.Files), m.FinishedAt.Sub(m.StartedAt))
	if during == 0 {
		t.Error("no ingest completed while the backup ran: it held ingest up")
	}
	if m.Events < int64(len(before)) || m.Events > count.Load() {
		t.Errorf("the backup holds %d events, want between the %d acknowledged before it and the %d acknowledged in all", m.Events, len(before), count.Load())
	}
	if m.Deliveries != 2*m.Events || m.OpenDeliveries != m.Events {
		t.Errorf("the backup holds %d deliveries, %d open, for %d events: want two each, the http one open", m.Deliveries, m.OpenDeliveries, m.Events)
	}
	if len(m.Files) != 5 || m.Files[0].Name != storage.MainDBFile || m.Files[0].Webhooks != 3 || m.Files[0].Targets != 6 || m.Files[1].Name != storage.IntakeFile {
		t.Errorf("files %+v: want the main DB (3 webhooks, 6 targets), the intake and 3 event DBs", m.Files)
	}
	checkBackupFiles(t, dir, m)
	closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.Close(closeCtx); err != nil {
		t.Fatal(err)
	}

	// Restore: the copies, as `cp` would copy them, into a fresh data_dir.
	data := t.TempDir()
	for _, f := range m.Files {
		copyFile(t, filepath.Join(dir, f.Name), filepath.Join(data, f.Name))
	}
	r := openStartedAt(t, data, &decl)
	for _, f := range m.Files[2:] {
		st, err := r.events.Stats(ctx, f.WebhookID)
		if err != nil {
			t.Fatal(err)
		}
		delivered := st.Deliveries[storage.DeliveryDelivered]
		open := st.Deliveries[storage.DeliveryPending] + st.Deliveries[storage.DeliveryRetrying]
		if int64(st.Events) != f.Events || int64(delivered+open) != f.Deliveries || int64(open) != f.OpenDeliveries {
			t.Errorf("restored %s: %d events, %d deliveries (%d open); the manifest says %d, %d (%d open)",
				f.Name, st.Events, delivered+open, open, f.Events, f.Deliveries, f.OpenDeliveries)
		}
	}
	for _, a := range before {
		err := r.events.With(ctx, a.webhookID, func(db *storage.WebhookDB) error {
			_, err := db.Event(ctx, a.eventID)
			return err
		})
		if err != nil {
			t.Fatalf("event %s, acknowledged before the backup began, is not in the restored copy: %v", a.eventID, err)
		}
	}
	// The targets were paused when the backup was taken, and are in the
	// copy: resumed, every open delivery goes out.
	for _, wh := range decl.Webhooks {
		if _, err := r.SetTargetPaused(ctx, wh, wh.Targets[0].ID, false); err != nil {
			t.Fatal(err)
		}
	}
	target.await(t, int(m.OpenDeliveries))
	// And it takes new events.
	route, _ := r.Route(decl.Webhooks[0].Entrypoints[0].Key)
	if err := r.Ingest(ctx, route, &storage.Event{Method: "POST", Body: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	target.await(t, int(m.OpenDeliveries)+1)
}

// TestBackupPausesTargetsInTheCopy: with PauseTargets, every live target is
// paused in the copy and a gateway started on it holds them paused, while
// the directory backed up keeps them running.
func TestBackupPausesTargetsInTheCopy(t *testing.T) {
	target := newIDTarget(t)
	wh := declaredWebhook("paused", httpTarget("out", target.URL, 3))
	core, logs := observer.New(zap.InfoLevel)
	decl := &Declaration{Webhooks: []*storage.Webhook{wh}, Logger: zap.New(core)}
	d := openStarted(t, Options{}, decl)
	route, _ := d.Route(wh.Entrypoints[0].Key)
	if err := d.Ingest(context.Background(), route, &storage.Event{Method: "POST", Body: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "backup")
	m, err := d.Backup(context.Background(), dir, BackupOptions{PauseTargets: true})
	if err != nil {
		t.Fatal(err)
	}
	if !m.TargetsPaused || m.Files[0].PausedTargets != 1 || m.Files[0].Targets != 1 {
		t.Errorf("manifest %+v: want the one target paused in the copy", m.Files[0])
	}
	if tg, _ := d.engine.Snapshot().Target(wh.ID, wh.Targets[0].ID); tg.Paused {
		t.Error("the target was paused in the directory backed up, not only in the copy")
	}
	if logged := logs.FilterMessage("backup written").FilterField(zap.String("dir", dir)).FilterField(zap.Bool("targets_paused", true)); logged.Len() != 1 {
		t.Errorf("the backup was logged %d times with its directory and paused targets, want once", logged.Len())
	}
	r := openStartedAt(t, dir, decl)
	if tg, ok := r.engine.Snapshot().Target(wh.ID, wh.Targets[0].ID); !ok || !tg.Paused {
		t.Errorf("the restored copy's target is not paused (%+v, %v)", tg, ok)
	}
}

// TestBackupRefusesBadDirectories: a relative path, a directory with
// something in it, and a directory inside the data directory (named
// directly or through a link) are refused as invalid input, and nothing
// is written.
func TestBackupRefusesBadDirectories(t *testing.T) {
	d := openStarted(t, Options{}, &Declaration{Webhooks: []*storage.Webhook{keptWebhook("kept", 0)}})
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(d.path, link); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ dir, says string }{
		{"backup", "absolute path"},
		{full, "not empty"},
		{d.path, "inside the data directory"},
		{filepath.Join(d.path, "backup"), "inside the data directory"},
		{filepath.Join(link, "backup"), "inside the data directory"},
		{filepath.Join(d.path, "..", filepath.Base(d.path), "b"), "inside the data directory"},
	} {
		_, err := d.Backup(context.Background(), c.dir, BackupOptions{})
		if !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("backup into %s: %v, want invalid, saying %q", c.dir, err, c.says)
		}
	}
	if _, err := os.Stat(filepath.Join(d.path, "backup")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused backup left %s/backup behind (%v)", d.path, err)
	}
}

// checkBackupFiles: the directory holds the manifest and the copies and
// nothing else, each 0600, each of the size the manifest says; backup.json
// says what Backup returned.
func checkBackupFiles(t *testing.T, dir string, m *storage.BackupManifest) {
	t.Helper()
	want := map[string]int64{BackupManifestFile: -1}
	for _, f := range m.Files {
		want[f.Name] = f.Size
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(want) {
		t.Errorf("the backup directory holds %d files, want %d", len(entries), len(want))
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		size, ok := want[e.Name()]
		switch {
		case !ok:
			t.Errorf("unexpected %s in the backup", e.Name())
		case info.Mode().Perm() != 0o600:
			t.Errorf("%s is %v, want 0600", e.Name(), info.Mode().Perm())
		case size >= 0 && info.Size() != size:
			t.Errorf("%s is %d bytes, the manifest says %d", e.Name(), info.Size(), size)
		}
	}
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("the backup directory made: %v, %v; want 0700", info.Mode(), err)
	}
	data, err := os.ReadFile(filepath.Join(dir, BackupManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	var read storage.BackupManifest
	if err := json.Unmarshal(data, &read); err != nil {
		t.Fatal(err)
	}
	if read.Events != m.Events || read.Deliveries != m.Deliveries || len(read.Files) != len(m.Files) || read.Version == "" {
		t.Errorf("backup.json says %+v, Backup returned %+v", read, m)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// openStartedAt opens the data directory at path, declares decl and starts
// it, closing it at the end of the test.
func openStartedAt(t *testing.T, path string, decl *Declaration) *Dir {
	t.Helper()
	return openStartedWith(t, path, Options{}, decl)
}

// openStartedWith opens the data directory at path with opts (synchronous
// normal), declares decl and starts it, closing it at the end of the test.
func openStartedWith(t *testing.T, path string, opts Options, decl *Declaration) *Dir {
	t.Helper()
	opts.Synchronous = storage.SynchronousNormal
	d, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := d.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	if err := d.Declare(decl); err != nil {
		t.Fatal(err)
	}
	d.Start()
	return d
}

// TestBackupRoute: POST /webhooker/backup on the admin endpoint's API
// answers the manifest, and bad input a 400 that says what is wrong; the
// API of a webhooker_admin site and the tenants' have no such route.
func TestBackupRoute(t *testing.T) {
	d := openStarted(t, Options{}, &Declaration{Webhooks: []*storage.Webhook{keptWebhook("kept", 0)}})
	ingestAt(t, d, "kept-in", time.Now())
	post := func(h http.Handler, body string) (int, string) {
		t.Helper()
		req := httptest.NewRequest("POST", "/webhooker/backup", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	dir := filepath.Join(t.TempDir(), "b")
	code, body := post(d.AdminEndpointAPI(), `{"dir":`+strconvQuote(dir)+`}`)
	var m storage.BackupManifest
	if err := json.Unmarshal([]byte(body), &m); code != http.StatusOK || err != nil || m.Events != 1 || m.Dir != dir || len(m.Files) != 3 {
		t.Fatalf("backup: %d %s", code, body)
	}
	for _, c := range []struct{ body, says string }{
		{`{"dir":"relative/b"}`, "absolute path"},
		{`{"dir":` + strconvQuote(dir) + `}`, "not empty"},
		{`{"dir":` + strconvQuote(filepath.Join(d.path, "b")) + `}`, "inside the data directory"},
		{`{}`, "give the backup directory"},
		{`{"dir":"/tmp/x","extra":1}`, "unknown field"},
		{`{"dir":"/tmp/x\u0000y"}`, "backup directory"},
		{`{"dir":"/` + strings.Repeat("a", 5000) + `"}`, "over 4096 bytes"},
	} {
		code, body := post(d.AdminEndpointAPI(), c.body)
		if code != http.StatusBadRequest || !strings.Contains(body, c.says) {
			t.Errorf("backup %.60s: %d %s, want 400 saying %q", c.body, code, body, c.says)
		}
	}
	// A tenant without a key is turned away before routing.
	for name, c := range map[string]struct {
		h    http.Handler
		want int
	}{"webhooker_admin site": {d.AdminAPI(), http.StatusNotFound}, "tenant": {d.TenantAPI(), http.StatusUnauthorized}} {
		other := filepath.Join(t.TempDir(), "b")
		if code, body := post(c.h, `{"dir":`+strconvQuote(other)+`}`); code != c.want {
			t.Errorf("the %s API answered a backup %d %s, want %d", name, code, body, c.want)
		}
		if _, err := os.Stat(other); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the %s API made %s (%v)", name, other, err)
		}
	}
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestBackupKeepsDedupIDs: a provider's repeat of an event that reached the
// restored copy is caught there as it was before: the dedup ids claimed
// before the backup are in it (intake.db, without its events).
func TestBackupKeepsDedupIDs(t *testing.T) {
	wh := keptWebhook("dedup", 0)
	decl := &Declaration{Webhooks: []*storage.Webhook{wh}}
	d := openStarted(t, Options{}, decl)
	ingest := func(d *Dir) string {
		t.Helper()
		route, _ := d.Route(wh.Entrypoints[0].Key)
		ev := &storage.Event{Method: "POST", Body: []byte(`{"id":"evt_1"}`), Dedup: storage.NewDedupKey("evt_1", time.Hour)}
		if err := d.Ingest(context.Background(), route, ev); err != nil {
			t.Fatal(err)
		}
		return ev.ID
	}
	first := ingest(d)
	dir := filepath.Join(t.TempDir(), "backup")
	m, err := d.Backup(context.Background(), dir, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Files[1].DedupKeys != 1 || m.Events != 1 {
		t.Errorf("the backup holds %d dedup ids and %d events, want 1 and 1", m.Files[1].DedupKeys, m.Events)
	}
	r := openStartedAt(t, dir, decl)
	if again := ingest(r); again != first {
		t.Errorf("the repeat was stored as event %s in the restored copy, want it answered with %s", again, first)
	}
	if n := eventCount(t, r, wh.ID); n != 1 {
		t.Errorf("the restored copy holds %d events, want 1", n)
	}
}

// TestBackupCutShortLeavesNothing: a backup whose caller went away (the
// command interrupted, the request's context ended) removes what it wrote
// and the directory it made, so that it can be taken again; one already
// running makes a second a conflict (409 on the route).
func TestBackupCutShortLeavesNothing(t *testing.T) {
	d := openStarted(t, Options{}, &Declaration{Webhooks: []*storage.Webhook{keptWebhook("kept", 0)}})
	ingestAt(t, d, "kept-in", time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := filepath.Join(t.TempDir(), "b")
	if _, err := d.Backup(ctx, dir, BackupOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("a backup on a context done: %v, want it cancelled", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the cancelled backup left %s behind (%v)", dir, err)
	}
	empty := t.TempDir()
	if _, err := d.Backup(ctx, empty, BackupOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("a backup on a context done: %v, want it cancelled", err)
	}
	if entries, err := os.ReadDir(empty); err != nil || len(entries) != 0 {
		t.Errorf("the cancelled backup left %d files in the directory it was given (%v)", len(entries), err)
	}

	d.backingUp.Lock() // a backup under way
	_, err := d.Backup(context.Background(), filepath.Join(t.TempDir(), "b"), BackupOptions{})
	d.backingUp.Unlock()
	if !errors.Is(err, storage.ErrConflict) {
		t.Errorf("a second backup at once: %v, want a conflict", err)
	}
	if _, err := d.Backup(context.Background(), dir, BackupOptions{}); err != nil {
		t.Errorf("the backup taken again: %v", err)
	}
}
