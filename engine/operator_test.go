package engine

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// inHand is the number of deliveries the engine holds (queued, running,
// parked or on a timer).
func (e *Engine) inHand() int {
	n := 0
	e.owned.Range(func(any, any) bool { n++; return true })
	return n
}

// setPaused pauses or resumes a target in the main DB and returns the
// configuration as then loaded.
func (env *testEnv) setPaused(webhookID, targetID string, paused bool) *storage.Snapshot {
	env.t.Helper()
	ctx := context.Background()
	if _, err := env.main.SetTargetPaused(ctx, webhookID, targetID, paused); err != nil {
		env.t.Fatalf("SetTargetPaused: %v", err)
	}
	snap, err := env.main.LoadSnapshot(ctx)
	if err != nil {
		env.t.Fatalf("LoadSnapshot: %v", err)
	}
	return snap
}

// A paused target's deliveries are let go untouched (no attempt, no timer,
// not failed), also by a restart's recovery, and a reload keeps the target
// paused; resumed, every one of them is delivered.
func TestPausedTargetHoldsItsDeliveriesUntilResumed(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, nil)
	env := newEnv(t)
	declared := webhook("shop", httpTarget("crm", tg.URL, quick(3)))
	snap := env.configure(declared)
	webhookID, targetID := declared.ID, declared.Targets[0].ID
	w := &watcher{}
	e := env.start(snap, Options{Observer: w})
	snap = env.setPaused(webhookID, targetID, true)
	e.SetSnapshot(snap)

	var sent []ingested
	for range 10 {
		sent = append(sent, env.send(e, snap, "shop-in", []byte(`{}`), nil))
	}
	waitFor(t, "the engine to let go of the 10", func() bool {
		fresh, retry := e.QueueLengths()
		return fresh == 0 && retry == 0 && e.inHand() == 0
	}, waitTimeout)
	check := func(when string) {
		t.Helper()
		if n := tg.count(); n != 0 {
			t.Fatalf("%s: the paused target got %d requests", when, n)
		}
		for _, in := range sent {
			if d := env.delivery(in.webhookID, in.deliveries[0].ID); d.Status != storage.DeliveryPending || d.Attempts != 0 {
				t.Errorf("%s: delivery %+v, want pending with no attempt", when, d)
			}
		}
		if n := e.PendingTimers(); n != 0 {
			t.Errorf("%s: %d timers", when, n)
		}
		if n := len(w.snapshot().attempts); n != 0 {
			t.Errorf("%s: %d attempts told", when, n)
		}
	}
	check("paused")

	// A reload declares the target again; a restart's recovery scans.
	stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.Stop(stopCtx)
	snap = env.configure(declared)
	if tgt, _ := snap.Target(webhookID, targetID); !tgt.Paused {
		t.Fatalf("a reload resumed the target: %+v", tgt)
	}
	env.logs.TakeAll()
	e = env.start(snap, Options{Observer: w})
	waitFor(t, "the recovery scan", func() bool { return env.logs.FilterMessage("recovered deliveries").Len() == 1 }, waitTimeout)
	if f := env.logs.FilterMessage("recovered deliveries").All()[0].ContextMap(); f["pending_run_now"] != int64(0) {
		t.Errorf("recovery took a paused target's deliveries: %v", f)
	}
	check("paused, after a restart")

	e.SetSnapshot(env.setPaused(webhookID, targetID, false))
	e.TargetResumed(webhookID)
	for _, in := range sent {
		env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	}
	if n := tg.count(); n != 10 {
		t.Errorf("the resumed target got %d requests, want 10", n)
	}
	env.noErrorLogs()
}

// A retrying delivery whose target is paused before it comes due is left
// in its event DB when it does, still retrying; resumed, it is delivered.
func TestPausedTargetLetsGoOfRetryingDeliveries(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	env := newEnv(t)
	// Due half a second after its first attempt: the pause comes first
	// (with quick retries the retry could win the race on a busy machine).
	opts := quick(3)
	opts.BackoffInitial, opts.BackoffMax = storage.Duration(500*time.Millisecond), storage.Duration(500*time.Millisecond)
	declared := webhook("shop", httpTarget("crm", tg.URL, opts))
	snap := env.configure(declared)
	e := env.start(snap, Options{})
	in := env.send(e, snap, "shop-in", []byte(`{}`), nil)
	env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryRetrying)
	e.SetSnapshot(env.setPaused(declared.ID, declared.Targets[0].ID, true))
	// Its webhook came due, was read, and nothing is due after it: the
	// paused target's delivery was left where it is.
	waitFor(t, "the schedule to read it and let it be", func() bool { return e.PendingTimers() == 0 && e.inHand() == 0 }, waitTimeout)
	if d := env.delivery(in.webhookID, in.deliveries[0].ID); d.Status != storage.DeliveryRetrying || d.Attempts != 1 || tg.count() != 1 {
		t.Errorf("paused: delivery %+v, %d requests", d, tg.count())
	}
	e.SetSnapshot(env.setPaused(declared.ID, declared.Targets[0].ID, false))
	e.TargetResumed(declared.ID)
	env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
}

// slowRetries are options whose retries wait an hour: only RetryNow runs
// them within a test.
func slowRetries() storage.TargetOptions {
	o := quick(3)
	o.BackoffInitial, o.BackoffMax = storage.Duration(time.Hour), storage.Duration(time.Hour)
	o.BreakerThreshold = intp(0)
	return o
}

func TestRetryNowAttemptsARetryingDeliveryAtOnce(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	env := newEnv(t)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, slowRetries())))
	e := env.start(snap, Options{})
	ctx := context.Background()
	in := env.send(e, snap, "shop-in", []byte(`{}`), nil)
	id := in.deliveries[0].ID
	env.waitStatus(in.webhookID, id, storage.DeliveryRetrying)
	waitFor(t, "its retry timer", func() bool { return e.PendingTimers() == 1 }, waitTimeout)

	if err := e.RetryNow(ctx, in.webhookID, id); err != nil {
		t.Fatalf("RetryNow: %v", err)
	}
	d := env.waitStatus(in.webhookID, id, storage.DeliveryDelivered)
	if d.Attempts != 2 || tg.count() != 2 {
		t.Errorf("after RetryNow: %+v, %d requests", d, tg.count())
	}
	if n := e.PendingTimers(); n != 0 {
		t.Errorf("%d timers left", n)
	}
	if err := e.RetryNow(ctx, in.webhookID, id); !errors.Is(err, storage.ErrNotOpen) {
		t.Errorf("RetryNow of a delivered delivery: %v, want ErrNotOpen", err)
	}
	if err := e.RetryNow(ctx, in.webhookID, "no-such-delivery"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RetryNow of an unknown delivery: %v, want ErrNotFound", err)
	}
	if err := e.RetryNow(ctx, storage.DeclaredWebhookID("nope"), id); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RetryNow in an unknown webhook: %v, want ErrNotFound", err)
	}
	if err := e.Cancel(ctx, in.webhookID, id); !errors.Is(err, storage.ErrNotOpen) {
		t.Errorf("Cancel of a delivered delivery: %v, want ErrNotOpen", err)
	}
	env.noErrorLogs()
}

func TestCancelEndsARetryingDeliveryAndStopsItsTimer(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	})
	env := newEnv(t)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, slowRetries())))
	w := &watcher{}
	e := env.start(snap, Options{Observer: w})
	ctx := context.Background()
	in := env.send(e, snap, "shop-in", []byte(`{}`), nil)
	id := in.deliveries[0].ID
	env.waitStatus(in.webhookID, id, storage.DeliveryRetrying)
	waitFor(t, "its retry timer", func() bool { return e.PendingTimers() == 1 }, waitTimeout)

	if err := e.Cancel(ctx, in.webhookID, id); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	d := env.delivery(in.webhookID, id)
	if d.Status != storage.DeliveryFailed || d.LastError != storage.CancelledError || d.Attempts != 1 {
		t.Errorf("cancelled: %+v", d)
	}
	if n, held := e.PendingTimers(), e.inHand(); n != 0 || held != 0 {
		t.Errorf("after Cancel: %d timers, %d deliveries in hand", n, held)
	}
	if err := e.Cancel(ctx, in.webhookID, id); !errors.Is(err, storage.ErrNotOpen) {
		t.Errorf("Cancel twice: %v, want ErrNotOpen", err)
	}
	if err := e.Cancel(ctx, in.webhookID, "no-such-delivery"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Cancel of an unknown delivery: %v, want ErrNotFound", err)
	}
	if n := len(w.snapshot().exhausted); n != 0 {
		t.Errorf("a cancel told as %d exhausted deliveries", n)
	}
}

// The race: cancelled while its attempt is in flight, and that attempt then
// fails. The attempt is recorded, the delivery stays failed as cancelled,
// and no timer is left.
func TestCancelDuringAnAttemptThatThenFailsStaysCancelled(t *testing.T) {
	t.Parallel()
	arrived, answer := make(chan struct{}, 1), make(chan struct{})
	tg := newTarget(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		select {
		case arrived <- struct{}{}:
		default: // a later attempt, which there must not be: counted
		}
		<-answer
		http.Error(w, "down", http.StatusInternalServerError)
	})
	env := newEnv(t)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, quick(3))))
	w := &watcher{}
	e := env.start(snap, Options{Observer: w})
	ctx := context.Background()
	in := env.send(e, snap, "shop-in", []byte(`{}`), nil)
	id := in.deliveries[0].ID
	<-arrived
	if err := e.Cancel(ctx, in.webhookID, id); err != nil {
		t.Fatalf("Cancel during the attempt: %v", err)
	}
	close(answer)
	waitFor(t, "the attempt to be recorded", func() bool { return len(w.snapshot().attempts) == 1 }, waitTimeout)
	d := env.delivery(in.webhookID, id)
	if d.Status != storage.DeliveryFailed || d.LastError != storage.CancelledError || !d.NextAttemptAt.IsZero() || d.Attempts != 1 {
		t.Errorf("after the attempt failed: %+v, want still cancelled", d)
	}
	if rs := env.results(in.webhookID, id); len(rs) != 1 || rs[0].StatusCode != 500 {
		t.Errorf("results %+v, want the failed attempt", rs)
	}
	if a := w.snapshot().attempts[0]; a.Status != storage.DeliveryFailed {
		t.Errorf("attempt told with status %s, want failed", a.Status)
	}
	waitFor(t, "the engine to let go of it", func() bool { return e.inHand() == 0 }, waitTimeout)
	if n := e.PendingTimers(); n != 0 {
		t.Errorf("%d timers left", n)
	}
	if n := len(w.snapshot().exhausted); n != 0 {
		t.Errorf("told %d exhausted", n)
	}
	if n := tg.count(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
	env.noErrorLogs()
}

// PostSigned sends as a signing http target would, verifiably, through the
// operator's transport and the policy in force: Caddy's admin endpoint is
// refused, and a non-2xx answer is an error.
func TestPostSignedSignsAndObeysThePolicy(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, nil)
	admin := newTarget(t, nil)
	failing := newTarget(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	})
	env := newEnv(t)
	policy := mustPolicy(t, PolicyConfig{AdminEndpoints: []string{admin.Listener.Addr().String()}})
	e := env.engine(env.configure(), Options{Policy: policy})
	secret := newSecret(t)
	opts := storage.TargetOptions{SigningSecret: secret, Headers: map[string]string{"X-Ops": "1", "Webhook-Signature": "forged"}}
	body := []byte(`{"type":"delivery.exhausted","data":{}}`)
	ctx := context.Background()

	code, err := e.PostSigned(ctx, tg.URL+"/ops?x=1", opts, "msg_alert_1", body)
	if err != nil || code != 200 {
		t.Fatalf("PostSigned: %d, %v", code, err)
	}
	reqs := tg.all()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if err := verifySignature(secret, r.header, r.body); err != nil {
		t.Errorf("signature: %v (headers %v)", err, r.header)
	}
	if err := verifySignature(secret, r.header, append(body[:len(body):len(body)], ' ')); err == nil {
		t.Error("a changed body verifies")
	}
	if string(r.body) != string(body) || r.header.Get("Webhook-Id") != "msg_alert_1" || r.header.Get("Content-Type") != "application/json" ||
		r.header.Get("X-Ops") != "1" || !strings.Contains(strings.Join(r.header.Values(HopHeader), ","), e.GatewayID()) {
		t.Errorf("request: body %s, headers %v", r.body, r.header)
	}
	if ts := r.header.Get("Webhook-Timestamp"); ts == "" {
		t.Error("no webhook-timestamp")
	}

	code, err = e.PostSigned(ctx, admin.URL+"/config/", opts, "msg_alert_2", body)
	if !errors.Is(err, ErrTargetPolicy) || code != 0 || admin.count() != 0 {
		t.Errorf("post to the admin endpoint: %d, %v, %d requests; want refused by the policy", code, err, admin.count())
	}
	code, err = e.PostSigned(ctx, failing.URL, opts, "msg_alert_3", body)
	if err == nil || code != http.StatusServiceUnavailable {
		t.Errorf("post to a target answering 503: %d, %v", code, err)
	}
	if _, err := e.PostSigned(ctx, "ftp://example.com/x", opts, "m", body); err == nil {
		t.Error("an ftp URL was taken")
	}
	// Unsigned: the headers are there, with no signature (not the forged one).
	if _, err := e.PostSigned(ctx, tg.URL, storage.TargetOptions{Headers: map[string]string{"Webhook-Signature": "forged"}}, "msg_4", body); err != nil {
		t.Fatal(err)
	}
	if r := tg.all()[1]; r.header.Get("Webhook-Signature") != "" || r.header.Get("Webhook-Id") != "msg_4" {
		t.Errorf("unsigned post headers %v", r.header)
	}
}

// The window between an attempt's record (retrying) and its timer: a cancel
// that lands there leaves no timer behind.
func TestCancelBeforeTheTimerIsSetLeavesNone(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	snap := env.configure(webhook("shop", httpTarget("crm", "http://127.0.0.1:9/hook", slowRetries())))
	e := env.engine(snap, Options{}) // not started: the test plays the worker
	in := env.ingest(snap, "shop-in", []byte(`{}`), nil)
	id := in.deliveries[0].ID
	e.owned.Store(id, struct{}{}) // in hand, its attempt recorded as retrying
	if err := e.Cancel(context.Background(), in.webhookID, id); err != nil {
		t.Fatal(err)
	}
	e.schedule(deliveryRef{webhookID: in.webhookID, deliveryID: id}, time.Now().Add(time.Hour))
	if n, held := e.PendingTimers(), e.inHand(); n != 0 || held != 0 {
		t.Errorf("after a cancel, then the timer of the attempt before it: %d timers, %d in hand", n, held)
	}
}
