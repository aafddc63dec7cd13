package admin_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/webhooker/caddy-webhooker/admin"
)

// outage is a target that refuses everything while down, and counts what
// it took per body once up.
type outage struct {
	*httptest.Server
	down atomic.Bool
	mu   sync.Mutex
	took map[string]int
}

func newOutage(t *testing.T) *outage {
	o := &outage{took: make(map[string]int)}
	o.down.Store(true)
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if o.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		o.mu.Lock()
		o.took[string(body)]++
		o.mu.Unlock()
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *outage) count(body string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.took[body]
}

type jobJSON struct {
	ID          string     `json:"id"`
	WebhookID   string     `json:"webhook_id"`
	State       string     `json:"state"`
	Matched     int        `json:"matched"`
	Redelivered int        `json:"redelivered"`
	Errors      int        `json:"errors"`
	LastError   string     `json:"last_error"`
	StartedAt   time.Time  `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at"`
}

// outageFixture is a webhook with a database target and an http target
// (no retries, no breaker) that was down while n events came: each event
// is delivered to the database and failed at the http target.
type outageFixture struct {
	*eventFixture
	target *outage
	events []string // ids, oldest first
	bodies []string
}

func newOutageFixture(t *testing.T, n int, configure func(*admin.Backend)) *outageFixture {
	e := newEnvWith(t, configure)
	f := &outageFixture{eventFixture: &eventFixture{env: e}, target: newOutage(t)}
	f.webhook = e.createWebhook("shop")
	f.key = f.webhook.Entrypoints[0].Key
	f.http = e.addTarget(f.webhook.ID, map[string]any{"name": "crm", "type": "http", "url": f.target.URL,
		"options": map[string]any{"max_retries": 0, "breaker_threshold": 0}})
	f.db = e.addTarget(f.webhook.ID, map[string]any{"name": "archive", "type": "database"})
	f.eventsURL = "/webhooker/webhooks/" + f.webhook.ID + "/events"
	for i := range n {
		body := fmt.Sprintf(`{"order":%d}`, i)
		f.bodies = append(f.bodies, body)
		f.events = append(f.events, f.ingest(f.key, incoming{body: []byte(body), contentType: "application/json"}))
	}
	for _, id := range f.events {
		for _, d := range f.settled(id, 2).Deliveries {
			if want := map[string]string{f.http.ID: "failed", f.db.ID: "delivered"}[d.TargetID]; d.Status != want {
				t.Fatalf("event %s: delivery to %s is %s, want %s", id, d.TargetName, d.Status, want)
			}
		}
	}
	f.target.down.Store(false)
	return f
}

func (f *outageFixture) redeliverURL() string {
	return "/webhooker/webhooks/" + f.webhook.ID + "/redeliver"
}

// job waits until job id is no longer running, or until cond holds.
func (f *outageFixture) job(h http.Handler, key, id string, cond func(jobJSON) bool) jobJSON {
	f.t.Helper()
	var j jobJSON
	eventually(f.t, "redelivery job "+id, func() (bool, string) {
		expect(f.t, serve(f.t, h, req{method: "GET", path: f.redeliverURL() + "/" + id, key: key}), http.StatusOK, &j)
		return j.State != "running" || (cond != nil && cond(j)), fmt.Sprintf("%+v", j)
	})
	return j
}

func TestBulkRedeliveryOfTheFailedAfterAnOutage(t *testing.T) {
	f := newOutageFixture(t, 30, nil)
	var count struct {
		Matched int `json:"matched"`
	}
	f.must(http.StatusOK, "POST", f.redeliverURL(), map[string]any{"status": "failed", "dry_run": true}, &count)
	if count.Matched != 30 {
		t.Fatalf("dry run matched %d, want 30", count.Matched)
	}
	f.must(http.StatusOK, "POST", f.redeliverURL(), map[string]any{"status": "failed", "target_id": f.db.ID, "dry_run": true}, &count)
	if count.Matched != 0 {
		t.Errorf("dry run at the database target matched %d, want 0", count.Matched)
	}
	if got := f.ids(nil); len(got) != 30 || f.target.count(f.bodies[0]) != 0 {
		t.Fatalf("a dry run changed something: %d events, %d received", len(got), f.target.count(f.bodies[0]))
	}

	start := time.Now()
	var started struct {
		Job jobJSON `json:"job"`
	}
	f.must(http.StatusAccepted, "POST", f.redeliverURL(), map[string]any{"status": "failed", "rate": 10}, &started)
	if started.Job.State != "running" || started.Job.Matched != 30 || started.Job.WebhookID != f.webhook.ID {
		t.Fatalf("job = %+v", started.Job)
	}
	// One job at a time per webhook.
	if resp := f.call("POST", f.redeliverURL(), map[string]any{"status": "failed"}); resp.status != http.StatusConflict {
		t.Errorf("a second job while one runs: %d %s, want 409", resp.status, resp.body)
	}
	j := f.job(f.admin, "", started.Job.ID, nil)
	took := time.Since(start)
	if j.State != "done" || j.Redelivered != 30 || j.Errors != 0 || j.FinishedAt == nil {
		t.Fatalf("finished job = %+v", j)
	}
	// 30 events at 10 a second: one per tick, the first after one tick.
	if took < 2900*time.Millisecond {
		t.Errorf("30 events at rate 10 took %v: faster than the rate", took)
	}
	t.Logf("30 events redelivered at rate 10/s in %v", took)

	for i, id := range f.events {
		ev := f.settled(id, 3)
		n := map[string]int{}
		for _, d := range ev.Deliveries {
			n[d.TargetID]++
			if d.Redelivery && (d.TargetID != f.http.ID || d.Status != "delivered") {
				t.Errorf("event %s: redelivery %+v", id, d)
			}
		}
		if n[f.http.ID] != 2 || n[f.db.ID] != 1 {
			t.Errorf("event %s: deliveries per target %v, want one new one to crm only", id, n)
		}
		if got := f.target.count(f.bodies[i]); got != 1 {
			t.Errorf("event %s reached the target %d times after the outage, want 1", id, got)
		}
	}
	// What was redelivered and delivered is failed no more.
	f.must(http.StatusOK, "POST", f.redeliverURL(), map[string]any{"status": "failed", "dry_run": true}, &count)
	if count.Matched != 0 {
		t.Errorf("after the job, %d still failed", count.Matched)
	}
}

func TestBulkRedeliveryCancelled(t *testing.T) {
	f := newOutageFixture(t, 30, nil)
	var started struct {
		Job jobJSON `json:"job"`
	}
	f.must(http.StatusAccepted, "POST", f.redeliverURL(), map[string]any{"status": "failed", "rate": 2}, &started)
	f.job(f.admin, "", started.Job.ID, func(j jobJSON) bool { return j.Redelivered >= 1 })
	var j jobJSON
	f.must(http.StatusOK, "DELETE", f.redeliverURL()+"/"+started.Job.ID, nil, &j)
	if j.State != "cancelled" || j.Redelivered < 1 || j.Redelivered >= j.Matched || j.FinishedAt == nil {
		t.Fatalf("cancelled job = %+v", j)
	}
	// It stays cancelled, and what it redelivered is exactly what is new.
	j2 := f.job(f.admin, "", started.Job.ID, nil)
	if j2.State != "cancelled" || j2.Redelivered != j.Redelivered {
		t.Errorf("later the job is %+v, was %+v", j2, j)
	}
	redelivered := 0
	for _, id := range f.events {
		redelivered += len(f.detail(id).Deliveries) - 2
	}
	if redelivered != j.Redelivered {
		t.Errorf("%d new deliveries, the job says %d", redelivered, j.Redelivered)
	}
	// A new job takes what is left.
	var count struct {
		Matched int `json:"matched"`
	}
	f.must(http.StatusOK, "POST", f.redeliverURL(), map[string]any{"status": "failed", "dry_run": true}, &count)
	if count.Matched != 30-j.Redelivered {
		t.Errorf("left after the cancel: %d, want %d", count.Matched, 30-j.Redelivered)
	}
}

func TestBulkRedeliveryEndsWithTheBackend(t *testing.T) {
	var b *admin.Backend
	background, stop := context.WithCancel(context.Background())
	defer stop()
	f := newOutageFixture(t, 5, func(cfg *admin.Backend) {
		cfg.Background = background
		b = cfg
	})
	var started struct {
		Job jobJSON `json:"job"`
	}
	f.must(http.StatusAccepted, "POST", f.redeliverURL(), map[string]any{"status": "failed", "rate": 1}, &started)
	stop()
	b.WaitJobs()
	var j jobJSON
	f.must(http.StatusOK, "GET", f.redeliverURL()+"/"+started.Job.ID, nil, &j)
	if j.State != "cancelled" || j.Redelivered >= 5 {
		t.Errorf("job after the backend ended: %+v", j)
	}
	if resp := f.call("POST", f.redeliverURL(), map[string]any{"status": "failed"}); resp.status != http.StatusServiceUnavailable {
		t.Errorf("a job after the backend ended: %d %s, want 503", resp.status, resp.body)
	}
}

func TestBulkRedeliveryBadRequests(t *testing.T) {
	f := newOutageFixture(t, 1, nil)
	disabled := f.addTarget(f.webhook.ID, map[string]any{"name": "off", "type": "database", "active": false})
	for _, tc := range []struct {
		body   any
		status int
		names  string
	}{
		{map[string]any{}, 400, "status"},
		{map[string]any{"status": "lost"}, 400, "status"},
		{map[string]any{"status": "failed", "rate": 0}, 400, "rate"},
		{map[string]any{"status": "failed", "rate": 1001}, 400, "rate"},
		{map[string]any{"status": "failed", "rate": "fast"}, 400, `field "rate"`},
		{map[string]any{"status": "failed", "from": "yesterday"}, 400, "from"},
		{map[string]any{"status": "failed", "to": "2025-06-01"}, 400, "to"},
		{map[string]any{"status": "failed", "from": "3000-01-01T00:00:00Z"}, 400, "from"},
		{map[string]any{"status": "failed", "from": "2025-06-02T00:00:00Z", "to": "2025-06-01T00:00:00Z"}, 400, "from"},
		{map[string]any{"status": "failed", "target_id": uuid.NewString()}, 400, "target_id"},
		{map[string]any{"status": "failed", "target_id": "crm"}, 400, "target_id"},
		{map[string]any{"status": "failed", "target_id": disabled.ID}, 409, "target off is disabled"},
		{map[string]any{"status": "failed", "webhook_id": f.webhook.ID}, 400, "unknown field"},
		{`{"status": "failed"`, 400, "malformed JSON"},
	} {
		resp := f.call("POST", f.redeliverURL(), tc.body)
		if resp.status != tc.status {
			t.Errorf("%v: %d %s, want %d", tc.body, resp.status, resp.body, tc.status)
			continue
		}
		if msg := resp.errorMessage(t); !strings.HasPrefix(msg, tc.names) {
			t.Errorf("%v: error %q does not begin with %q", tc.body, msg, tc.names)
		}
	}
	for _, path := range []string{f.redeliverURL() + "/" + uuid.NewString(), f.redeliverURL() + "/job-1"} {
		if resp := f.call("GET", path, nil); resp.status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, resp.status)
		}
	}
}

func TestTenantSeesOnlyOwnRedeliveryJobs(t *testing.T) {
	f := newOutageFixture(t, 0, nil)
	_, aliceKey := f.createUser("alice")
	_, bobKey := f.createUser("bob")
	webhookOf := func(key string) webhookJSON {
		var w webhookJSON
		expect(t, serve(t, f.tenant, req{method: "POST", path: "/webhooker/webhooks", key: key,
			body: map[string]any{"name": "hooks"}}), http.StatusCreated, &w)
		expect(t, serve(t, f.tenant, req{method: "POST", path: "/webhooker/webhooks/" + w.ID + "/targets", key: key,
			body: map[string]any{"name": "keep", "type": "database"}}), http.StatusCreated, nil)
		return w
	}
	alice, bob := webhookOf(aliceKey.Key), webhookOf(bobKey.Key)
	var started struct {
		Job jobJSON `json:"job"`
	}
	aliceJobs := "/webhooker/webhooks/" + alice.ID + "/redeliver"
	expect(t, serve(t, f.tenant, req{method: "POST", path: aliceJobs, key: aliceKey.Key,
		body: map[string]any{"status": "failed"}}), http.StatusAccepted, &started)

	for _, tc := range []struct{ method, path string }{
		{"GET", aliceJobs + "/" + started.Job.ID},
		{"DELETE", aliceJobs + "/" + started.Job.ID},
		{"POST", aliceJobs},
		{"GET", "/webhooker/webhooks/" + bob.ID + "/redeliver/" + started.Job.ID},
		{"DELETE", "/webhooker/webhooks/" + bob.ID + "/redeliver/" + started.Job.ID},
	} {
		resp := serve(t, f.tenant, req{method: tc.method, path: tc.path, key: bobKey.Key, body: map[string]any{"status": "failed"}})
		if resp.status != http.StatusNotFound {
			t.Errorf("bob %s %s: %d %s, want 404", tc.method, tc.path, resp.status, resp.body)
		}
	}
	var j jobJSON
	expect(t, serve(t, f.tenant, req{method: "GET", path: aliceJobs + "/" + started.Job.ID, key: aliceKey.Key}), http.StatusOK, &j)
	if j.ID != started.Job.ID {
		t.Errorf("alice's job = %+v", j)
	}
	// The operator sees it too.
	f.must(http.StatusOK, "GET", aliceJobs+"/"+started.Job.ID, nil, &j)
}

// The job runs on the Backend's lifetime: the request that started it
// ends (its client gone, its context cancelled) and the job goes on.
func TestBulkRedeliveryOutlivesItsRequest(t *testing.T) {
	f := newOutageFixture(t, 3, nil)
	ctx, cancel := context.WithCancel(context.Background())
	r := httptest.NewRequestWithContext(ctx, "POST", f.redeliverURL(), strings.NewReader(`{"status":"failed","rate":100}`))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	f.admin.ServeHTTP(w, r)
	cancel()
	var started struct {
		Job jobJSON `json:"job"`
	}
	expect(t, response{status: w.Code, header: w.Header(), body: w.Body.Bytes()}, http.StatusAccepted, &started)
	if j := f.job(f.admin, "", started.Job.ID, nil); j.State != "done" || j.Redelivered != 3 {
		t.Errorf("job after its request ended: %+v", j)
	}
}
