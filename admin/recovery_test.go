package admin_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/webhooker/caddy-webhooker/admin"
)

// heldFixture is a webhook whose http target (an outage, down) retries
// after half an hour: its deliveries wait, retrying, for the operator.
type heldFixture struct {
	*env
	target  *outage
	webhook webhookJSON
	http    targetJSON
	base    string // /webhooker/webhooks/{id}
}

func newHeldFixture(t *testing.T, configure func(*admin.Backend)) *heldFixture {
	e := newEnvWith(t, configure)
	f := &heldFixture{env: e, target: newOutage(t)}
	f.webhook = e.createWebhook("shop")
	f.http = e.addTarget(f.webhook.ID, map[string]any{"name": "crm", "type": "http", "url": f.target.URL,
		"options": map[string]any{"max_retries": 3, "backoff_initial": "30m", "backoff_max": "1h", "breaker_threshold": 0}})
	f.base = "/webhooker/webhooks/" + f.webhook.ID
	return f
}

// delivery is the one delivery of event id once it is in status.
func (f *heldFixture) delivery(id, status string) deliveryJSON {
	f.t.Helper()
	var d deliveryJSON
	eventually(f.t, "delivery of "+id, func() (bool, string) {
		var ev eventJSON
		f.must(http.StatusOK, "GET", f.base+"/events/"+id, nil, &ev)
		if len(ev.Deliveries) != 1 {
			return false, fmt.Sprintf("%d deliveries", len(ev.Deliveries))
		}
		d = ev.Deliveries[0]
		return d.Status == status, d.Status
	})
	return d
}

func (f *heldFixture) retrying(body string) deliveryJSON {
	f.t.Helper()
	id := f.ingest(f.webhook.Entrypoints[0].Key, incoming{body: []byte(body), contentType: "application/json"})
	return f.delivery(id, "retrying")
}

func TestRetryNowAndCancel(t *testing.T) {
	f := newHeldFixture(t, nil)
	retried := f.retrying(`{"n":1}`)
	cancelled := f.retrying(`{"n":2}`)
	f.target.down.Store(false)

	var accepted struct {
		DeliveryID string `json:"delivery_id"`
	}
	f.must(http.StatusAccepted, "POST", f.base+"/deliveries/"+retried.ID+"/retry", nil, &accepted)
	if accepted.DeliveryID != retried.ID {
		t.Errorf("retry answered %+v", accepted)
	}
	var d deliveryJSON
	f.must(http.StatusOK, "POST", f.base+"/deliveries/"+cancelled.ID+"/cancel", nil, &d)
	if d.ID != cancelled.ID || d.Status != "failed" || !strings.Contains(d.LastError, "cancelled") {
		t.Errorf("cancel answered %+v", d)
	}
	eventually(t, "the retried delivery", func() (bool, string) {
		return f.target.count(`{"n":1}`) == 1, fmt.Sprint(f.target.count(`{"n":1}`))
	})

	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/deliveries/" + cancelled.ID + "/retry", http.StatusConflict},  // failed: not open
		{"/deliveries/" + cancelled.ID + "/cancel", http.StatusConflict}, // cancelled already
		{"/deliveries/" + uuid.NewString() + "/retry", http.StatusNotFound},
		{"/deliveries/" + uuid.NewString() + "/cancel", http.StatusNotFound},
		{"/deliveries/not-an-id/retry", http.StatusNotFound},
	} {
		resp := f.call("POST", f.base+tc.path, nil)
		if resp.status != tc.status {
			t.Errorf("POST %s: %d %s, want %d", tc.path, resp.status, resp.body, tc.status)
		} else {
			resp.errorMessage(t)
		}
	}
	// Delivered now: not open either.
	f.delivery(f.deliveryEvent(retried), "delivered")
	if resp := f.call("POST", f.base+"/deliveries/"+retried.ID+"/retry", nil); resp.status != http.StatusConflict {
		t.Errorf("retry of a delivered delivery: %d %s, want 409", resp.status, resp.body)
	}
	// A delivery of this webhook is not found under another.
	other := f.createWebhook("other")
	if resp := f.call("POST", "/webhooker/webhooks/"+other.ID+"/deliveries/"+retried.ID+"/retry", nil); resp.status != http.StatusNotFound {
		t.Errorf("retry under another webhook: %d %s, want 404", resp.status, resp.body)
	}
	if f.target.count(`{"n":2}`) != 0 {
		t.Errorf("the cancelled delivery was sent")
	}
}

// deliveryEvent finds the event of a delivery in the event list.
func (f *heldFixture) deliveryEvent(d deliveryJSON) string {
	f.t.Helper()
	var p eventPage
	f.must(http.StatusOK, "GET", f.base+"/events", nil, &p)
	for _, ev := range p.Events {
		for _, x := range ev.Deliveries {
			if x.ID == d.ID {
				return ev.ID
			}
		}
	}
	f.t.Fatalf("no event has delivery %s", d.ID)
	return ""
}

func TestPauseAndResumeATarget(t *testing.T) {
	f := newHeldFixture(t, nil)
	f.target.down.Store(false)
	var target targetJSON
	f.must(http.StatusOK, "POST", f.base+"/targets/"+f.http.ID+"/pause", nil, &target)
	if target.ID != f.http.ID || !target.Paused || !target.Active {
		t.Fatalf("paused target = %+v", target)
	}
	var w webhookJSON
	f.must(http.StatusOK, "GET", f.base, nil, &w)
	if !w.Targets[0].Paused {
		t.Errorf("webhook shows its target %+v", w.Targets[0])
	}
	id := f.ingest(f.webhook.Entrypoints[0].Key, incoming{body: []byte(`{"n":1}`), contentType: "application/json"})
	f.must(http.StatusOK, "POST", f.base+"/targets/"+f.http.ID+"/resume", nil, &target)
	if target.Paused {
		t.Errorf("resumed target = %+v", target)
	}
	f.delivery(id, "delivered")

	for _, path := range []string{
		f.base + "/targets/" + uuid.NewString() + "/pause",
		f.base + "/targets/crm/pause",
		"/webhooker/webhooks/" + uuid.NewString() + "/targets/" + f.http.ID + "/pause",
	} {
		if resp := f.call("POST", path, nil); resp.status != http.StatusNotFound {
			t.Errorf("POST %s: %d %s, want 404", path, resp.status, resp.body)
		}
	}
	// A target of another webhook is not this one's.
	other := f.createWebhook("other")
	if resp := f.call("POST", "/webhooker/webhooks/"+other.ID+"/targets/"+f.http.ID+"/pause", nil); resp.status != http.StatusNotFound {
		t.Errorf("pause through another webhook: %d %s, want 404", resp.status, resp.body)
	}
	if resp := f.call("GET", f.base+"/targets/"+f.http.ID+"/pause", nil); resp.status != http.StatusMethodNotAllowed {
		t.Errorf("GET pause: %d, want 405", resp.status)
	}
}

func TestRecoveryToolsOfATenant(t *testing.T) {
	f := newHeldFixture(t, nil)
	_, alice := f.createUser("alice")
	_, bob := f.createUser("bob")
	var aw webhookJSON
	expect(t, serve(t, f.tenant, req{method: "POST", path: "/webhooker/webhooks", key: alice.Key,
		body: map[string]any{"name": "hooks"}}), http.StatusCreated, &aw)
	var at targetJSON
	expect(t, serve(t, f.tenant, req{method: "POST", path: "/webhooker/webhooks/" + aw.ID + "/targets", key: alice.Key,
		body: map[string]any{"name": "keep", "type": "database"}}), http.StatusCreated, &at)
	// The operator's held delivery, on a webhook neither tenant owns.
	held := f.retrying(`{"n":1}`)

	for _, tc := range []struct{ key, path string }{
		{bob.Key, "/webhooker/webhooks/" + aw.ID + "/targets/" + at.ID + "/pause"},
		{bob.Key, "/webhooker/webhooks/" + aw.ID + "/targets/" + at.ID + "/resume"},
		{alice.Key, f.base + "/targets/" + f.http.ID + "/pause"},
		{alice.Key, f.base + "/deliveries/" + held.ID + "/retry"},
		{alice.Key, f.base + "/deliveries/" + held.ID + "/cancel"},
		{alice.Key, "/webhooker/webhooks/" + aw.ID + "/deliveries/" + held.ID + "/cancel"},
		{alice.Key, "/webhooker/webhooks/" + aw.ID + "/targets/" + f.http.ID + "/pause"},
	} {
		resp := serve(t, f.tenant, req{method: "POST", path: tc.path, key: tc.key})
		if resp.status != http.StatusNotFound {
			t.Errorf("POST %s: %d %s, want 404", tc.path, resp.status, resp.body)
		}
	}
	if d := f.delivery(f.deliveryEvent(held), "retrying"); d.ID != held.ID {
		t.Errorf("the held delivery changed: %+v", d)
	}
	var target targetJSON
	expect(t, serve(t, f.tenant, req{method: "POST", path: "/webhooker/webhooks/" + aw.ID + "/targets/" + at.ID + "/pause",
		key: alice.Key}), http.StatusOK, &target)
	if !target.Paused {
		t.Errorf("alice paused %+v", target)
	}
}

func TestRecoveryToolsNotWiredAre501(t *testing.T) {
	f := newHeldFixture(t, func(b *admin.Backend) {
		b.SetTargetPaused, b.RetryNow, b.CancelDelivery = nil, nil, nil
	})
	d := uuid.NewString()
	for _, path := range []string{"/targets/" + f.http.ID + "/pause", "/targets/" + f.http.ID + "/resume",
		"/deliveries/" + d + "/retry", "/deliveries/" + d + "/cancel"} {
		resp := f.call("POST", f.base+path, nil)
		if resp.status != http.StatusNotImplemented {
			t.Errorf("POST %s: %d %s, want 501", path, resp.status, resp.body)
		} else if msg := resp.errorMessage(t); !strings.Contains(msg, "not available") {
			t.Errorf("POST %s: %q", path, msg)
		}
	}
}
