package engine

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// engineMapSizes is the size of every map and timer set the engine keeps,
// for the backlog test's figures: none may grow with waiting deliveries.
func engineMapSizes(e *Engine) string {
	e.scanMu.Lock()
	due, recovering := e.due.Len(), len(e.recovering)
	e.scanMu.Unlock()
	e.timersMu.Lock()
	faults := len(e.faultTimers)
	e.timersMu.Unlock()
	count := func(m interface{ Range(func(any, any) bool) }) int {
		n := 0
		m.Range(func(any, any) bool { n++; return true })
		return n
	}
	e.breakersMu.Lock()
	breakers := len(e.breakers)
	e.breakersMu.Unlock()
	return fmt.Sprintf("maps: due %d, recovering %d, faultTimers %d, owned %d, cancelled %d, storageFaults %d, readFaults %d, breakers %d, parked %d",
		due, recovering, faults, count(&e.owned), count(&e.cancelled), count(&e.storageFaults), count(&e.readFaults), breakers, e.ParkedDeliveries())
}

// Retrying deliveries are let go: however many wait, the engine holds one
// due time for their webhook, none of them in hand, and no timer each (it
// held a timer and an owned entry per delivery).
func TestRetryingDeliveriesAreLetGoWithOneDueTimePerWebhook(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	})
	env := newEnv(t)
	snap := env.configure(
		webhook("shop", httpTarget("crm", tg.URL, slowRetries())),
		webhook("mill", httpTarget("erp", tg.URL, slowRetries())))
	e := env.start(snap, Options{})
	var all []ingested
	for i := range 40 {
		key := "shop-in"
		if i%4 == 0 {
			key = "mill-in"
		}
		all = append(all, env.send(e, snap, key, []byte(`{}`), nil))
	}
	for _, in := range all {
		env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryRetrying)
	}
	waitFor(t, "every outcome let go", func() bool { return e.inHand() == 0 }, waitTimeout)
	if n := e.PendingTimers(); n != 2 {
		t.Errorf("%d retry waits for 40 deliveries of 2 webhooks, want 2 (one per webhook); %s", n, engineMapSizes(e))
	}
	e.timersMu.Lock()
	faults := len(e.faultTimers)
	e.timersMu.Unlock()
	if faults != 0 {
		t.Errorf("%d deliveries on timers of their own", faults)
	}
	e.scanMu.Lock()
	shop, shopDue := e.due.At(storage.DeclaredWebhookID("shop"))
	mill, millDue := e.due.At(storage.DeclaredWebhookID("mill"))
	e.scanMu.Unlock()
	first := func(key string) time.Time {
		var at time.Time
		for _, in := range all {
			d := env.delivery(in.webhookID, in.deliveries[0].ID)
			if in.webhookID == storage.DeclaredWebhookID(key) && (at.IsZero() || d.NextAttemptAt.Before(at)) {
				at = d.NextAttemptAt
			}
		}
		return at
	}
	if !shopDue || !millDue || !shop.Equal(first("shop")) || !mill.Equal(first("mill")) {
		t.Errorf("due times %s (%v) %s (%v), want each webhook's first retry (%s, %s)", shop, shopDue, mill, millDue, first("shop"), first("mill"))
	}
}

// A delivery read back after an attempt put it off (a read of due
// deliveries saw it due just before) is not attempted before its time: it
// is let go, and its webhook's due time kept.
func TestADeliveryReadBackBeforeItsTimeIsNotAttempted(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, nil)
	env := newEnv(t)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, slowRetries())))
	e := env.engine(snap, Options{}) // not started: the test plays the worker
	in := env.ingest(snap, "shop-in", []byte(`{}`), nil)
	id := in.deliveries[0].ID
	next := time.Now().Add(time.Hour)
	err := env.events.With(context.Background(), in.webhookID, func(db *storage.WebhookDB) error {
		return db.RecordAttempt(context.Background(), storage.DeliveryResult{DeliveryID: id, Attempt: 1, StartedAt: time.Now(), Error: "x"},
			storage.DeliveryOutcome{Status: storage.DeliveryRetrying, NextAttemptAt: next, LastError: "x"})
	})
	if err != nil {
		t.Fatal(err)
	}
	e.owned.Store(id, struct{}{})
	if onward := e.runRef(deliveryRef{webhookID: in.webhookID, deliveryID: id}); onward != nil {
		t.Errorf("onward %+v", onward)
	}
	if n := tg.count(); n != 0 {
		t.Errorf("attempted %d times an hour before its time", n)
	}
	if d := env.delivery(in.webhookID, id); d.Attempts != 1 || d.Status != storage.DeliveryRetrying {
		t.Errorf("delivery %+v, want retrying after its 1 attempt", d)
	}
	e.scanMu.Lock()
	due, ok := e.due.At(in.webhookID)
	e.scanMu.Unlock()
	if e.inHand() != 0 || !ok || !due.Equal(next) {
		t.Errorf("in hand %d, due at %s (%v); want let go, due at %s", e.inHand(), due, ok, next)
	}
}

// A dead target's circuit breaker holds its backlog where it is: once a
// cooldown, a probe and the few deliveries read with it are put off again,
// not every held delivery (each was rewritten once a cooldown: with a
// million waiting, a million writes every 30 s while the target is down).
func TestABreakerHoldingABacklogRewritesLittleOfItEachCooldown(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	})
	env := newEnv(t)
	const cooldown = 300 * time.Millisecond
	opts := quick(100)
	opts.BreakerThreshold = intp(1)
	opts.BreakerCooldown = storage.Duration(cooldown)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, opts)))
	targetID := snap.Webhooks()[0].Targets[0].ID
	e := env.start(snap, Options{Workers: 1, QueueSize: 128, RetryQueueSize: 4})
	const backlog = 100
	var all []ingested
	for range backlog {
		all = append(all, env.send(e, snap, "shop-in", []byte(`{}`), nil))
	}
	for _, in := range all {
		env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryRetrying)
	}
	waitFor(t, "every delivery let go", func() bool { return e.inHand() == 0 }, waitTimeout)
	if s := e.BreakerState(targetID); s != "open" {
		t.Fatalf("breaker %s, want open", s)
	}
	mark, probes := time.Now(), tg.count()
	time.Sleep(3 * cooldown)
	rewritten := 0
	for _, in := range all {
		if d := env.delivery(in.webhookID, in.deliveries[0].ID); d.UpdatedAt.After(mark) {
			rewritten++
		}
	}
	t.Logf("%d of %d held deliveries rewritten over 3 cooldowns; %d requests (probes)", rewritten, backlog, tg.count()-probes)
	if rewritten >= backlog/2 {
		t.Errorf("%d of %d held deliveries rewritten over 3 cooldowns", rewritten, backlog)
	}
	if n := tg.count() - probes; n > 4 {
		t.Errorf("%d requests over 3 cooldowns, want a probe each", n)
	}
}
