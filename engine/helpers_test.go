package engine

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/webhooker/caddy-webhooker/storage"
)

// waitTimeout bounds every wait for an outcome. It is a deadline for a
// failing test, not a performance claim: outcomes are polled from the DB.
const waitTimeout = 10 * time.Second

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, what string, cond func() bool, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testEnv is a data directory with a real main DB and real event DBs.
type testEnv struct {
	t      *testing.T
	dir    string // the data directory
	events *storage.WebhookDBManager
	main   *storage.MainDB
	logger *zap.Logger
	logs   *observer.ObservedLogs
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	events, err := storage.NewWebhookDBManager(dir, storage.ManagerOptions{Synchronous: storage.SynchronousNormal})
	if err != nil {
		t.Fatalf("NewWebhookDBManager: %v", err)
	}
	main, err := storage.OpenMainDB(ctx, dir, storage.SynchronousNormal)
	if err != nil {
		t.Fatalf("OpenMainDB: %v", err)
	}
	t.Cleanup(func() {
		if err := events.CloseAll(context.Background()); err != nil {
			t.Errorf("CloseAll: %v", err)
		}
		if err := main.Close(); err != nil {
			t.Errorf("close main DB: %v", err)
		}
	})
	core, logs := observer.New(zapcore.DebugLevel)
	return &testEnv{t: t, dir: dir, events: events, main: main, logger: zap.New(core), logs: logs}
}

// webhook declares a webhook named name, with entrypoint key name+"-in", and
// the given targets (their ids derived from their names).
func webhook(name string, targets ...storage.Target) *storage.Webhook {
	id := storage.DeclaredWebhookID(name)
	key := name + "-in"
	w := &storage.Webhook{
		ID: id, Name: name, Source: storage.SourceCaddyfile, Active: true,
		Entrypoints: []storage.Entrypoint{{ID: storage.DeclaredEntrypointID(id, key), WebhookID: id, Key: key, Active: true}},
	}
	for _, tg := range targets {
		tg.ID = storage.DeclaredTargetID(id, tg.Name)
		tg.WebhookID = id
		tg.Active = true
		w.Targets = append(w.Targets, tg)
	}
	return w
}

func httpTarget(name, url string, o storage.TargetOptions) storage.Target {
	return storage.Target{Name: name, Type: storage.TargetHTTP, URL: url, Options: o}
}

// quick are target options that make retries fast.
func quick(maxRetries int) storage.TargetOptions {
	return storage.TargetOptions{
		MaxRetries:     &maxRetries,
		Timeout:        storage.Duration(5 * time.Second),
		BackoffInitial: storage.Duration(20 * time.Millisecond),
		BackoffMax:     storage.Duration(50 * time.Millisecond),
	}
}

func intp(n int) *int { return &n }

// configure writes the webhooks to the main DB as the Caddyfile would, and
// reads the live configuration back.
func (env *testEnv) configure(webhooks ...*storage.Webhook) *storage.Snapshot {
	env.t.Helper()
	ctx := context.Background()
	for _, w := range webhooks {
		for _, tg := range w.Targets {
			if err := tg.Validate(); err != nil {
				env.t.Fatalf("invalid target: %v", err)
			}
		}
	}
	if _, err := env.main.SyncDeclared(ctx, webhooks); err != nil {
		env.t.Fatalf("SyncDeclared: %v", err)
	}
	snap, err := env.main.LoadSnapshot(ctx)
	if err != nil {
		env.t.Fatalf("LoadSnapshot: %v", err)
	}
	return snap
}

// engine makes an engine on env's event DBs with snap in force, without
// starting it; it is stopped at the end of the test.
func (env *testEnv) engine(snap *storage.Snapshot, opts Options) *Engine {
	env.t.Helper()
	if opts.Logger == nil {
		opts.Logger = env.logger
	}
	e := New(env.events, opts)
	e.SetSnapshot(snap)
	env.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.Stop(ctx)
	})
	return e
}

// start makes and starts an engine.
func (env *testEnv) start(snap *storage.Snapshot, opts Options) *Engine {
	env.t.Helper()
	e := env.engine(snap, opts)
	e.Start()
	return e
}

// ingested is an event stored as the ingest handler stores it.
type ingested struct {
	webhookID  string
	event      *storage.Event
	deliveries []storage.Delivery
	tasks      []Task
	targets    []storage.Target
}

// to is the pending delivery of the event to the target named name (a
// database target's is stored delivered by the ingest and has none).
func (in ingested) to(t *testing.T, name string) storage.Delivery {
	t.Helper()
	for _, tg := range in.targets {
		if tg.Name != name {
			continue
		}
		for _, d := range in.deliveries {
			if d.TargetID == tg.ID {
				return d
			}
		}
	}
	t.Fatalf("event has no pending delivery to a target named %q", name)
	return storage.Delivery{}
}

// ingest stores an event for the entrypoint key exactly as the ingest
// handler does, and builds its tasks, without notifying any engine.
func (env *testEnv) ingest(snap *storage.Snapshot, key string, body []byte, header http.Header) ingested {
	env.t.Helper()
	route, ok := snap.Route(key)
	if !ok {
		env.t.Fatalf("no route for key %q", key)
	}
	if header == nil {
		header = http.Header{}
	}
	if header.Get("Content-Type") == "" {
		header.Set("Content-Type", "application/json")
	}
	header.Set("Host", "gateway.example")
	ev := &storage.Event{
		EntrypointID: route.Entrypoint.ID, EntrypointKey: key, Method: http.MethodPost,
		Path: "/hooks/" + key, Query: "a=1", Headers: header, Body: body,
		ContentType: header.Get("Content-Type"), RemoteAddr: "192.0.2.7:40000", ReceivedAt: time.Now(),
	}
	var deliveries []storage.Delivery
	err := env.events.With(context.Background(), route.Webhook.ID, func(db *storage.WebhookDB) error {
		var err error
		deliveries, err = db.Ingest(ev, route.Targets)
		return err
	})
	if err != nil {
		env.t.Fatalf("Ingest: %v", err)
	}
	return ingested{
		webhookID: route.Webhook.ID, event: ev, deliveries: deliveries,
		tasks:   TasksForEvent(route.Webhook.ID, ev, deliveries, route.Targets),
		targets: route.Targets,
	}
}

// send ingests an event and notifies e, as the ingest handler does.
func (env *testEnv) send(e *Engine, snap *storage.Snapshot, key string, body []byte, header http.Header) ingested {
	env.t.Helper()
	in := env.ingest(snap, key, body, header)
	e.Notify(in.tasks)
	return in
}

func (env *testEnv) delivery(webhookID, id string) storage.Delivery {
	env.t.Helper()
	var d storage.Delivery
	err := env.events.With(context.Background(), webhookID, func(db *storage.WebhookDB) error {
		var err error
		d, err = db.Delivery(context.Background(), id)
		return err
	})
	if err != nil {
		env.t.Fatalf("read delivery %s: %v", id, err)
	}
	return d
}

func (env *testEnv) results(webhookID, id string) []storage.DeliveryResult {
	env.t.Helper()
	var rs []storage.DeliveryResult
	err := env.events.With(context.Background(), webhookID, func(db *storage.WebhookDB) error {
		var err error
		rs, err = db.DeliveryResults(context.Background(), id)
		return err
	})
	if err != nil {
		env.t.Fatalf("read results of %s: %v", id, err)
	}
	return rs
}

// waitStatus waits until delivery id has status, and returns it.
func (env *testEnv) waitStatus(webhookID, id string, status storage.DeliveryStatus) storage.Delivery {
	env.t.Helper()
	var d storage.Delivery
	waitFor(env.t, "delivery "+id+" to be "+string(status), func() bool {
		d = env.delivery(webhookID, id)
		return d.Status == status
	}, waitTimeout)
	return d
}

// noErrorLogs fails the test if the engine logged an error.
func (env *testEnv) noErrorLogs() {
	env.t.Helper()
	for _, entry := range env.logs.FilterLevelExact(zapcore.ErrorLevel).All() {
		env.t.Errorf("engine logged an error: %s %v", entry.Message, entry.ContextMap())
	}
}

// received is one request as a test target saw it.
type received struct {
	at     time.Time
	header http.Header
	body   []byte
	host   string
}

// target is an httptest server that records what it receives and answers
// with respond (200 "ok" when nil). n is the 1-based number of the request.
type target struct {
	*httptest.Server
	mu       sync.Mutex
	requests []received
	respond  func(n int, w http.ResponseWriter, r *http.Request)
}

func newTarget(t *testing.T, respond func(n int, w http.ResponseWriter, r *http.Request)) *target {
	t.Helper()
	tg := &target{respond: respond}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("target: read body: %v", err)
		}
		tg.mu.Lock()
		tg.requests = append(tg.requests, received{at: time.Now(), header: r.Header.Clone(), body: body, host: r.Host})
		n := len(tg.requests)
		tg.mu.Unlock()
		if tg.respond == nil {
			_, _ = io.WriteString(w, "ok")
			return
		}
		tg.respond(n, w, r)
	}))
	t.Cleanup(tg.Close)
	return tg
}

func (tg *target) count() int {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return len(tg.requests)
}

func (tg *target) all() []received {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return append([]received(nil), tg.requests...)
}

// tenantWebhook creates, as the tenant API does, a webhook owned by a new
// user with the one target tg and its event DB, and reads the live
// configuration back. It returns the configuration, the webhook and its
// entrypoint key.
func (env *testEnv) tenantWebhook(name string, tg storage.Target) (*storage.Snapshot, *storage.Webhook, string) {
	env.t.Helper()
	ctx := context.Background()
	user, err := env.main.CreateUser(ctx, name+"-owner")
	if err != nil {
		env.t.Fatalf("CreateUser: %v", err)
	}
	w, err := env.main.CreateWebhook(ctx, storage.NewWebhook{UserID: user.ID, Name: name})
	if err != nil {
		env.t.Fatalf("CreateWebhook: %v", err)
	}
	if err := env.events.Create(ctx, w.ID); err != nil {
		env.t.Fatalf("create event DB: %v", err)
	}
	tg.Active = true
	if _, err := env.main.AddTarget(ctx, w.ID, tg); err != nil {
		env.t.Fatalf("AddTarget: %v", err)
	}
	snap, err := env.main.LoadSnapshot(ctx)
	if err != nil {
		env.t.Fatalf("LoadSnapshot: %v", err)
	}
	w, ok := snap.Webhook(w.ID)
	if !ok || w.UserID != user.ID || len(w.Entrypoints) != 1 || len(w.Targets) != 1 {
		env.t.Fatalf("tenant webhook as loaded: %+v", w)
	}
	return snap, w, w.Entrypoints[0].Key
}

// sendNumbered sends the events {"i":from} … {"i":to-1} to key, one after
// the other, as the ingest handler does.
func sendNumbered(env *testEnv, e *Engine, snap *storage.Snapshot, key string, from, to int) []ingested {
	var sent []ingested
	for i := from; i < to; i++ {
		sent = append(sent, env.send(e, snap, key, []byte(`{"i":`+strconv.Itoa(i)+`}`), nil))
	}
	return sent
}

// waitAll waits until the first delivery of each sent event has status.
func waitAll(env *testEnv, sent []ingested, status storage.DeliveryStatus) {
	env.t.Helper()
	for _, in := range sent {
		env.waitStatusWithin(in.webhookID, in.deliveries[0].ID, status, 30*time.Second)
	}
}
