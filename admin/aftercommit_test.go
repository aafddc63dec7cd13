package admin_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/webhooker/caddy-webhooker/admin"
	"github.com/webhooker/caddy-webhooker/storage"
)

// hangingUp serves requests on a context of their own that the client
// "hangs up" (cancels) at the first ConfigChanged, that is right after the
// change is committed and before it is put in force.
type hangingUp struct {
	next http.Handler
	mu   sync.Mutex
	hang context.CancelFunc
	hung int // ConfigChanged calls that hung up a request
}

func (h *hangingUp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	h.mu.Lock()
	h.hang = cancel
	h.mu.Unlock()
	h.next.ServeHTTP(w, r.WithContext(ctx))
}

// hangUp cancels the request being served, once.
func (h *hangingUp) hangUp() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hang != nil {
		h.hang()
		h.hang = nil
		h.hung++
	}
}

// newHangingUpEnv is an env whose admin handler, served through the
// returned hangingUp, loses its client right after each committed change.
func newHangingUpEnv(t *testing.T) (*env, *hangingUp) {
	t.Helper()
	h := &hangingUp{}
	e := newEnvWith(t, func(b *admin.Backend) {
		inForce := b.ConfigChanged
		b.ConfigChanged = func(ctx context.Context) error {
			h.hangUp()
			return inForce(ctx)
		}
	})
	h.next = e.admin
	return e, h
}

// A client that hangs up right after a committed change leaves the change
// in force for ingest and delivery, and the event DB files consistent with
// the configuration: created with the webhook, gone with it.
func TestCommittedChangeIsPutInForceWhenTheClientHangsUp(t *testing.T) {
	e, h := newHangingUpEnv(t)

	var wh webhookJSON
	expect(t, serve(t, h, req{method: "POST", path: "/webhooker/webhooks", body: map[string]any{"name": "orders"}}), http.StatusCreated, &wh)
	if h.hung != 1 {
		t.Fatalf("ConfigChanged hung up %d requests, want 1: the test did not cancel the create", h.hung)
	}
	if len(wh.Entrypoints) != 1 {
		t.Fatalf("created webhook has entrypoints %+v, want one", wh.Entrypoints)
	}
	key := wh.Entrypoints[0].Key
	route, ok := e.engine.Snapshot().Route(key)
	if !ok || route.Webhook.ID != wh.ID {
		t.Fatalf("after a create whose client hung up, entrypoint %s routes to %+v (found %v), want webhook %s", key, route.Webhook, ok, wh.ID)
	}
	if !e.events.Exists(wh.ID) {
		t.Fatalf("created webhook %s has no event DB file", wh.ID)
	}

	expect(t, serve(t, h, req{method: "PATCH", path: "/webhooker/webhooks/" + wh.ID, body: map[string]any{"active": false}}), http.StatusOK, nil)
	if route, ok := e.engine.Snapshot().Route(key); !ok || route.Webhook.Active {
		t.Fatalf("after a disable whose client hung up, the snapshot in force has the webhook active (found %v)", ok)
	}

	resp := serve(t, h, req{method: "DELETE", path: "/webhooker/webhooks/" + wh.ID})
	expect(t, resp, http.StatusNoContent, nil)
	if h.hung != 3 {
		t.Fatalf("ConfigChanged hung up %d requests, want 3", h.hung)
	}
	if _, ok := e.engine.Snapshot().Route(key); ok {
		t.Errorf("after a delete whose client hung up, the deleted webhook's entrypoint %s still routes", key)
	}
	if _, ok := e.engine.Snapshot().Webhook(wh.ID); ok {
		t.Errorf("after a delete whose client hung up, webhook %s is still in force", wh.ID)
	}
	if e.events.Exists(wh.ID) {
		t.Errorf("after a delete whose client hung up, the event DB file of webhook %s is left behind", wh.ID)
	}
	e.must(http.StatusNotFound, "GET", "/webhooker/webhooks/"+wh.ID, nil, nil)
}

// A delete whose configuration cannot be put in force still removes the
// event DB (nothing else would), and answers the failure.
func TestDeletedWebhookLosesItsEventDBWhenTheSwapFails(t *testing.T) {
	var failSwap bool
	e := newEnvWith(t, func(b *admin.Backend) {
		inForce := b.ConfigChanged
		b.ConfigChanged = func(ctx context.Context) error {
			if failSwap {
				return os.ErrDeadlineExceeded
			}
			return inForce(ctx)
		}
	})
	wh := e.createWebhook("invoices")
	if !e.events.Exists(wh.ID) {
		t.Fatalf("created webhook %s has no event DB file", wh.ID)
	}
	failSwap = true
	resp := e.call("DELETE", "/webhooker/webhooks/"+wh.ID, nil)
	if resp.status != http.StatusInternalServerError {
		t.Fatalf("delete with a failing swap: status %d (%s), want 500", resp.status, resp.body)
	}
	if e.events.Exists(wh.ID) {
		t.Errorf("the event DB file of deleted webhook %s is left behind when the swap failed", wh.ID)
	}
	failSwap = false
	e.must(http.StatusNotFound, "GET", "/webhooker/webhooks/"+wh.ID, nil, nil)
}

// A create whose event DB cannot be made is undone: no webhook is left
// that could store nothing.
func TestCreateIsUndoneWhenItsEventDBCannotBeMade(t *testing.T) {
	eventsDir := filepath.Join(t.TempDir(), "events")
	e := newEnvWith(t, func(b *admin.Backend) {
		events, err := storage.NewWebhookDBManager(eventsDir, storage.ManagerOptions{Synchronous: storage.SynchronousNormal})
		if err != nil {
			t.Fatal(err)
		}
		b.Events = events
	})
	// Removed after the manager made it: creating a file in it fails, for
	// root too.
	if err := os.RemoveAll(eventsDir); err != nil {
		t.Fatal(err)
	}
	resp := e.call("POST", "/webhooker/webhooks", map[string]any{"name": "undone"})
	if resp.status != http.StatusInternalServerError {
		t.Fatalf("create without an event DB: status %d (%s), want 500", resp.status, resp.body)
	}
	var list struct {
		Webhooks []webhookJSON `json:"webhooks"`
	}
	e.must(http.StatusOK, "GET", "/webhooker/webhooks", nil, &list)
	if len(list.Webhooks) != 0 {
		t.Errorf("after a failed create the API lists %+v, want nothing", list.Webhooks)
	}
}
