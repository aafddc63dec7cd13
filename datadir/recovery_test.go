package datadir

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/admin"
	"github.com/webhooker/caddy-webhooker/engine"
	"github.com/webhooker/caddy-webhooker/storage"
	"github.com/webhooker/caddy-webhooker/verify"
)

// countingTarget is an http target that answers status and counts requests.
type countingTarget struct {
	*httptest.Server
	requests atomic.Int64
}

func newCountingTarget(t *testing.T, status int) *countingTarget {
	t.Helper()
	ct := &countingTarget{}
	ct.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		ct.requests.Add(1)
		w.WriteHeader(status)
	}))
	t.Cleanup(ct.Close)
	return ct
}

// declaredWebhook declares webhook name, with entrypoint name+"-in" and
// targets (their ids derived from their names).
func declaredWebhook(name string, targets ...storage.Target) *storage.Webhook {
	wh := keptWebhook(name, 0)
	wh.Targets = nil
	for _, t := range targets {
		t.ID, t.WebhookID, t.Active = storage.DeclaredTargetID(wh.ID, t.Name), wh.ID, true
		wh.Targets = append(wh.Targets, t)
	}
	return wh
}

func httpTarget(name, url string, maxRetries int) storage.Target {
	return storage.Target{Name: name, Type: storage.TargetHTTP, URL: url, Options: storage.TargetOptions{
		MaxRetries:     &maxRetries,
		Timeout:        storage.Duration(5 * time.Second),
		BackoffInitial: storage.Duration(20 * time.Millisecond),
		BackoffMax:     storage.Duration(50 * time.Millisecond),
	}}
}

// watcher is the extra observer of a Dir in tests: it hands on what the
// engine tells.
type watcher struct {
	engine.NopObserver
	attempts  chan engine.AttemptInfo
	exhausted chan engine.AttemptInfo
}

func newWatcher() *watcher {
	return &watcher{attempts: make(chan engine.AttemptInfo, 64), exhausted: make(chan engine.AttemptInfo, 64)}
}

func (w *watcher) AttemptRecorded(a engine.AttemptInfo)   { w.attempts <- a }
func (w *watcher) DeliveryExhausted(a engine.AttemptInfo) { w.exhausted <- a }

func (w *watcher) nextAttempt(t *testing.T) engine.AttemptInfo {
	t.Helper()
	select {
	case a := <-w.attempts:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("no attempt was recorded")
		return engine.AttemptInfo{}
	}
}

// alertLog is a Declaration's Alerted: it keeps what it is told.
type alertLog struct {
	mu     sync.Mutex
	alerts []Alert
}

func (l *alertLog) alerted(a Alert) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.alerts = append(l.alerts, a)
}

func (l *alertLog) types() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, a := range l.alerts {
		out = append(out, a.Type)
	}
	return out
}

func openStarted(t *testing.T, opts Options, decl *Declaration) *Dir {
	t.Helper()
	return openStartedWith(t, t.TempDir(), opts, decl)
}

// streamChanges connects to the admin API's live updates and sends the
// webhook id of every change it hears.
func streamChanges(t *testing.T, d *Dir) <-chan string {
	t.Helper()
	srv := httptest.NewServer(d.AdminAPI())
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); srv.Close() })
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+admin.Prefix+"/stream", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /stream: %s", resp.Status)
	}
	changes := make(chan string, 64)
	lines := bufio.NewScanner(resp.Body)
	if !lines.Scan() { // ": listening": from here on nothing is missed
		t.Fatalf("the stream said nothing: %v", lines.Err())
	}
	go func() {
		defer resp.Body.Close()
		for lines.Scan() {
			if data, ok := strings.CutPrefix(lines.Text(), "data: "); ok {
				var c struct {
					WebhookID string `json:"webhook_id"`
				}
				if json.Unmarshal([]byte(data), &c) == nil {
					changes <- c.WebhookID
				}
			}
		}
	}()
	return changes
}

// A paused target is sent nothing and loses nothing: its delivery waits,
// pending, while the other target of the same event is delivered; resumed,
// it is delivered once. Each change of state is alerted, and the event log
// hears of the event.
func TestPausedTargetWaitsAndResumedDelivers(t *testing.T) {
	ctx := context.Background()
	held, live := newCountingTarget(t, http.StatusOK), newCountingTarget(t, http.StatusOK)
	wh := declaredWebhook("shop", httpTarget("a-held", held.URL, 3), httpTarget("b-live", live.URL, 3))
	w := newWatcher()
	var alerts alertLog
	d := openStarted(t, Options{Workers: 1, Observer: w},
		&Declaration{Webhooks: []*storage.Webhook{wh}, Alerted: alerts.alerted})
	changes := streamChanges(t, d)
	key := wh.Entrypoints[0].Key
	route, _ := d.Route(key)
	if len(route.Targets) != 2 || route.Targets[0].Name != "a-held" {
		t.Fatalf("targets in route order: %+v, want a-held first", route.Targets)
	}
	heldID := route.Targets[0].ID

	got, err := d.SetTargetPaused(ctx, route.Webhook, heldID, true)
	if err != nil || !got.Paused {
		t.Fatalf("pause: %+v, %v", got, err)
	}
	if _, err := d.SetTargetPaused(ctx, route.Webhook, heldID, true); err != nil { // again: no news
		t.Fatal(err)
	}
	route, _ = d.Route(key)
	ev := &storage.Event{Method: "POST", Path: "/" + key, Body: []byte(`{"n":1}`)}
	if err := d.Ingest(ctx, route, ev); err != nil {
		t.Fatal(err)
	}
	// One worker takes the event's tasks in target order: once b-live's
	// attempt is recorded, a-held's task has been handled (let go).
	if a := w.nextAttempt(t); a.TargetName != "b-live" || a.Status != storage.DeliveryDelivered {
		t.Fatalf("first attempt %+v, want b-live delivered", a)
	}
	if n := held.requests.Load(); n != 0 {
		t.Fatalf("the paused target got %d requests", n)
	}
	var heldDelivery storage.Delivery
	err = d.events.With(ctx, wh.ID, func(db *storage.WebhookDB) error {
		ds, err := db.Deliveries(ctx, ev.ID)
		for _, dl := range ds {
			if dl.TargetID == heldID {
				heldDelivery = dl
			}
		}
		return err
	})
	if err != nil || heldDelivery.Status != storage.DeliveryPending || heldDelivery.Attempts != 0 {
		t.Fatalf("the paused target's delivery: %+v, %v; want pending, no attempt", heldDelivery, err)
	}
	oldest, err := d.OldestOpenDelivery(ctx)
	if err != nil || len(oldest) != 1 || !oldest[wh.ID].Equal(ev.ReceivedAt) {
		t.Errorf("OldestOpenDelivery = %v, %v; want %s: %v", oldest, err, wh.ID, ev.ReceivedAt)
	}
	select {
	case id := <-changes:
		if id != wh.ID {
			t.Errorf("the stream told a change of %s, want %s", id, wh.ID)
		}
	case <-time.After(10 * time.Second):
		t.Error("the stream told no change after the ingest")
	}

	if _, err := d.SetTargetPaused(ctx, route.Webhook, heldID, false); err != nil {
		t.Fatal(err)
	}
	if a := w.nextAttempt(t); a.TargetName != "a-held" || a.Status != storage.DeliveryDelivered || a.DeliveryID != heldDelivery.ID {
		t.Fatalf("after the resume: %+v, want the held delivery delivered", a)
	}
	if n := held.requests.Load(); n != 1 {
		t.Errorf("the resumed target got %d requests, want 1", n)
	}
	if oldest, err := d.OldestOpenDelivery(ctx); err != nil || len(oldest) != 0 {
		t.Errorf("OldestOpenDelivery with nothing open = %v, %v; want none", oldest, err)
	}
	if got, want := strings.Join(alerts.types(), " "), "target.paused target.resumed"; got != want {
		t.Errorf("alerts: %q, want %q (pausing a paused target is no news)", got, want)
	}
}

// verifySigned checks an alert's Standard Webhooks signature with secret.
func verifySigned(t *testing.T, secret string, a receivedAlert) {
	t.Helper()
	v, err := verify.New(verify.StandardWebhooks, []string{secret}, verify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(verify.Request{Method: http.MethodPost, Header: a.Header, Body: a.Body}); err != nil {
		t.Errorf("alert %s: signature refused: %v", a.Type, err)
	}
}

// A target that fails until it gives up makes one delivery.exhausted
// alert: one call of Alerted, and one signed POST to the operational
// webhook naming the webhook, target, event, delivery and attempts.
func TestExhaustedDeliveryAlertsOnce(t *testing.T) {
	ctx := context.Background()
	failing := newCountingTarget(t, http.StatusInternalServerError)
	rcv := newAlertReceiver(t)
	secret, err := storage.NewSigningSecret()
	if err != nil {
		t.Fatal(err)
	}
	wh := declaredWebhook("billing", httpTarget("erp", failing.URL, 1))
	w := newWatcher()
	var alerts alertLog
	d := openStarted(t, Options{Workers: 1, Observer: w}, &Declaration{
		Webhooks:           []*storage.Webhook{wh},
		OperationalWebhook: &OperationalWebhook{URL: rcv.URL, Options: storage.TargetOptions{SigningSecret: secret}},
		Alerted:            alerts.alerted,
	})
	route, _ := d.Route(wh.Entrypoints[0].Key)
	ev := &storage.Event{Method: "POST", Path: "/billing-in", Body: []byte(`{}`)}
	if err := d.Ingest(ctx, route, ev); err != nil {
		t.Fatal(err)
	}
	var gaveUp engine.AttemptInfo
	select {
	case gaveUp = <-w.exhausted:
	case <-time.After(10 * time.Second):
		t.Fatal("the delivery did not give up")
	}
	a := waitAlert(t, rcv)
	verifySigned(t, secret, a)
	if a.Type != AlertDeliveryExhausted {
		t.Fatalf("alert type %q, want %q", a.Type, AlertDeliveryExhausted)
	}
	want := map[string]any{"webhook_id": wh.ID, "webhook_name": "billing", "target_id": route.Targets[0].ID,
		"target_name": "erp", "event_id": ev.ID, "delivery_id": gaveUp.DeliveryID, "attempts": float64(2)}
	for k, v := range want {
		if a.Data[k] != v {
			t.Errorf("data.%s = %v, want %v", k, a.Data[k], v)
		}
	}
	if a.Data["error"] == "" || a.Data["error"] == nil {
		t.Errorf("data.error is empty: %v", a.Data)
	}
	// A marker behind it in the sender's queue: had a second alert been
	// queued, it would have arrived before the marker.
	d.alert(Alert{Type: AlertBreakerClosed, At: time.Now(), WebhookID: wh.ID})
	if m := waitAlert(t, rcv); m.Type != AlertBreakerClosed {
		t.Errorf("after the exhausted alert came %q, want only the marker", m.Type)
	}
	if n := rcv.requests(); n != 2 {
		t.Errorf("the operational webhook got %d requests, want 2 (the alert, the marker)", n)
	}
	if got := alerts.types(); len(got) != 2 || got[0] != AlertDeliveryExhausted {
		t.Errorf("Alerted was told %v, want one %s (then the marker)", got, AlertDeliveryExhausted)
	}
	if n := failing.requests.Load(); n != 2 {
		t.Errorf("the failing target got %d attempts, want 2 (max_retries 1)", n)
	}
}

// Every alert type reaches the operational webhook once, signed, in the
// shape {type, timestamp, data}, each with a message id of its own.
func TestEveryAlertTypeReachesTheOperationalWebhookSigned(t *testing.T) {
	ctx := context.Background()
	rcv := newAlertReceiver(t)
	secret, err := storage.NewSigningSecret()
	if err != nil {
		t.Fatal(err)
	}
	target := newCountingTarget(t, http.StatusOK)
	wh := declaredWebhook("ops", httpTarget("crm", target.URL, 0))
	var alerts alertLog
	d := openStarted(t, Options{Workers: 1}, &Declaration{
		Webhooks:           []*storage.Webhook{wh},
		OperationalWebhook: &OperationalWebhook{URL: rcv.URL, Options: storage.TargetOptions{SigningSecret: secret}},
		Alerted:            alerts.alerted,
	})
	route, _ := d.Route(wh.Entrypoints[0].Key)
	tgt := route.Targets[0]
	obs := dirObserver{d: d, extra: engine.NopObserver{}}
	info := engine.DeliveryInfo{WebhookID: wh.ID, WebhookName: wh.Name, TargetID: tgt.ID, TargetName: tgt.Name,
		TargetType: storage.TargetHTTP, EventID: "e1", DeliveryID: "d1"}
	ti := engine.TargetInfo{WebhookID: wh.ID, WebhookName: wh.Name, TargetID: tgt.ID, TargetName: tgt.Name}
	retryAt := time.Now().Add(30 * time.Second)

	obs.DeliveryExhausted(engine.AttemptInfo{DeliveryInfo: info, Attempt: 11, Status: storage.DeliveryFailed, Error: "answered 500"})
	obs.BreakerOpened(ti, retryAt, "connection refused")
	obs.BreakerClosed(ti)
	if _, err := d.SetTargetPaused(ctx, route.Webhook, tgt.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := d.SetTargetPaused(ctx, route.Webhook, tgt.ID, false); err != nil {
		t.Fatal(err)
	}

	wantTypes := []string{AlertDeliveryExhausted, AlertBreakerOpened, AlertBreakerClosed, AlertTargetPaused, AlertTargetResumed}
	ids := make(map[string]bool)
	for i, want := range wantTypes {
		a := waitAlert(t, rcv)
		if a.Type != want {
			t.Errorf("alert %d is %q, want %q", i, a.Type, want)
		}
		verifySigned(t, secret, a)
		id := a.Header.Get("Webhook-Id")
		if ids[id] {
			t.Errorf("message id %s used twice", id)
		}
		ids[id] = true
		var body map[string]any
		if err := json.Unmarshal(a.Body, &body); err != nil {
			t.Fatal(err)
		}
		if ts, _ := body["timestamp"].(string); ts == "" {
			t.Errorf("%s: no timestamp: %s", a.Type, a.Body)
		} else if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("%s: timestamp %q: %v", a.Type, ts, err)
		}
		if a.Data["webhook_name"] != "ops" || a.Data["target_name"] != "crm" {
			t.Errorf("%s: data %v, want webhook ops, target crm", a.Type, a.Data)
		}
		switch a.Type {
		case AlertDeliveryExhausted:
			if a.Data["event_id"] != "e1" || a.Data["delivery_id"] != "d1" || a.Data["attempts"] != float64(11) || a.Data["error"] != "answered 500" {
				t.Errorf("%s: data %v", a.Type, a.Data)
			}
		case AlertBreakerOpened:
			if at, err := time.Parse(time.RFC3339Nano, a.Data["retry_at"].(string)); err != nil || !at.Equal(retryAt) {
				t.Errorf("%s: retry_at %v, want %v", a.Type, a.Data["retry_at"], retryAt)
			}
		default:
			if _, ok := a.Data["event_id"]; ok {
				t.Errorf("%s: has an event_id: %v", a.Type, a.Data)
			}
		}
	}
	if got := strings.Join(alerts.types(), " "); got != strings.Join(wantTypes, " ") {
		t.Errorf("Alerted was told %q, want %q", got, strings.Join(wantTypes, " "))
	}
}

// A bulk redelivery job runs on the Dir's Background, not on its request:
// Close ends it and waits for it. Before Background was ended by Close, a
// job at 1 event a second over 10 events held Close until its grace
// period ran out.
func TestCloseEndsBulkRedeliveryJobs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := Open(dir, Options{Synchronous: storage.SynchronousNormal, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	wh := keptWebhook("replayed", 0)
	if err := d.Declare(&Declaration{Webhooks: []*storage.Webhook{wh}}); err != nil {
		t.Fatal(err)
	}
	d.Start()
	const events = 10
	for range events {
		ingestAt(t, d, wh.Entrypoints[0].Key, time.Now())
	}
	srv := httptest.NewServer(d.AdminAPI())
	defer srv.Close()
	resp, err := http.Post(srv.URL+admin.Prefix+"/webhooks/"+wh.ID+"/redeliver", "application/json",
		strings.NewReader(`{"status":"delivered","rate":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("bulk redeliver: %s, want 202", resp.Status)
	}

	closeCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := d.Close(closeCtx); err != nil {
		t.Fatalf("Close with a bulk redelivery job running: %v", err)
	}

	// What the job did before it ended is stored; nothing more comes.
	again, err := Open(dir, Options{Synchronous: storage.SynchronousNormal})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close(ctx)
	st, err := again.events.Stats(ctx, wh.ID)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.Deliveries[storage.DeliveryDelivered]; n < events || n > events+3 {
		t.Errorf("%d deliveries after Close ended the job, want %d to %d", n, events, events+3)
	}
}

// An event stored is news for the event log's live updates, also when no
// delivery attempt follows (a database target is delivered in the ingest's
// own transaction, and the engine tells nothing).
func TestIngestPublishesAChange(t *testing.T) {
	wh := keptWebhook("archive-only", 0)
	d := openStarted(t, Options{Workers: 1}, &Declaration{Webhooks: []*storage.Webhook{wh}})
	changes := streamChanges(t, d)
	ingestAt(t, d, wh.Entrypoints[0].Key, time.Now())
	select {
	case id := <-changes:
		if id != wh.ID {
			t.Errorf("the stream told a change of %s, want %s", id, wh.ID)
		}
	case <-time.After(10 * time.Second):
		t.Error("the stream told no change after the ingest")
	}
}

// A bulk redelivery job outlives a reload: the API of the next declaration
// shows it, and refuses a second job on its webhook while it runs. (Each
// declaration's Backend kept its own jobs before: after a reload the job
// was a 404 and a second one could start beside it.)
func TestBulkRedeliveryJobOutlivesAReload(t *testing.T) {
	ctx := context.Background()
	d, err := Open(t.TempDir(), Options{Synchronous: storage.SynchronousNormal, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(ctx)
	wh := keptWebhook("replayed", 0)
	if err := d.Declare(&Declaration{Webhooks: []*storage.Webhook{wh}}); err != nil {
		t.Fatal(err)
	}
	d.Start()
	for range 5 {
		ingestAt(t, d, wh.Entrypoints[0].Key, time.Now())
	}
	post := func(api http.Handler) (int, map[string]any) {
		srv := httptest.NewServer(api)
		defer srv.Close()
		resp, err := http.Post(srv.URL+admin.Prefix+"/webhooks/"+wh.ID+"/redeliver", "application/json",
			strings.NewReader(`{"status":"delivered","rate":1}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	status, out := post(d.AdminAPI())
	if status != http.StatusAccepted {
		t.Fatalf("bulk redeliver: %d %v, want 202", status, out)
	}
	job := out["job"].(map[string]any)["id"].(string)

	// A reload: a new declaration, a new Backend.
	if err := d.Declare(&Declaration{Webhooks: []*storage.Webhook{keptWebhook("replayed", 0)}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d.AdminAPI())
	defer srv.Close()
	resp, err := http.Get(srv.URL + admin.Prefix + "/webhooks/" + wh.ID + "/redeliver/" + job)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the job after a reload: %s, want 200", resp.Status)
	}
	if status, out := post(d.AdminAPI()); status != http.StatusConflict {
		t.Errorf("a second job after a reload while the first runs: %d %v, want 409", status, out)
	}
}
