package engine

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

func TestRecoveryRunsPendingAtOnceAndRetryingWhenDue(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	arrived := map[string]time.Time{}
	tg := newTarget(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrived[r.Header.Get("Webhook-Id")] = time.Now()
		mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	})
	env := newEnv(t)
	snap := env.configure(webhook("shop",
		httpTarget("crm", tg.URL, quick(3)),
		storage.Target{Name: "audit", Type: storage.TargetLog}))

	// What a killed process leaves behind: pending deliveries never
	// attempted, and one retrying after a failed attempt.
	pending := []ingested{
		env.ingest(snap, "shop-in", []byte(`{"n":1}`), nil),
		env.ingest(snap, "shop-in", []byte(`{"n":2}`), nil),
	}
	retrying := env.ingest(snap, "shop-in", []byte(`{"n":3}`), nil)
	crm := retrying.to(t, "crm")
	due := time.Now().Add(time.Second)
	ctx := context.Background()
	err := env.events.With(ctx, retrying.webhookID, func(db *storage.WebhookDB) error {
		return db.RecordAttempt(ctx,
			storage.DeliveryResult{DeliveryID: crm.ID, Attempt: 1, StartedAt: time.Now(),
				StatusCode: 500, Error: "target answered 500"},
			storage.DeliveryOutcome{Status: storage.DeliveryRetrying, NextAttemptAt: due, LastError: "target answered 500"})
	})
	if err != nil {
		t.Fatal(err)
	}

	e := env.start(snap, Options{})
	for _, in := range pending {
		for _, d := range in.deliveries {
			env.waitStatus(in.webhookID, d.ID, storage.DeliveryDelivered)
		}
	}
	mu.Lock()
	for _, in := range pending {
		if at := arrived[MessageID(in.event.ID, in.to(t, "crm").TargetID)]; at.IsZero() || !at.Before(due) {
			t.Errorf("pending delivery arrived %s after the retrying one was due: not at once", at.Sub(due))
		}
	}
	mu.Unlock()
	if got := env.delivery(retrying.webhookID, crm.ID); got.Status != storage.DeliveryRetrying &&
		time.Now().Before(due) {
		t.Errorf("retrying delivery is %s before it is due", got.Status)
	}
	waitFor(t, "a timer for the retrying delivery", func() bool {
		return e.PendingTimers() == 1 || !time.Now().Before(due)
	}, waitTimeout)

	d := env.waitStatus(retrying.webhookID, crm.ID, storage.DeliveryDelivered)
	mu.Lock()
	at := arrived[MessageID(retrying.event.ID, d.TargetID)]
	mu.Unlock()
	if at.IsZero() {
		t.Error("the retrying delivery never reached the target")
	} else if at.Before(due) {
		t.Errorf("retrying delivery attempted %s before its next_attempt_at", due.Sub(at))
	}
	if d.Attempts != 2 {
		t.Errorf("retrying delivery: attempts = %d, want 2", d.Attempts)
	}
	if rs := env.results(retrying.webhookID, d.ID); len(rs) != 2 || rs[1].Attempt != 2 || rs[1].StatusCode != 200 {
		t.Errorf("results = %+v", rs)
	}
	// The log target of the retrying event was pending: delivered at once.
	env.waitStatus(retrying.webhookID, retrying.to(t, "audit").ID, storage.DeliveryDelivered)
	if n := tg.count(); n != 3 {
		t.Errorf("target got %d requests, want 3", n)
	}
	env.noErrorLogs()
}

func TestRecoveryOfRetryingDeliveryPastItsTimeRunsAtOnce(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, nil)
	env := newEnv(t)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, quick(3))))
	in := env.ingest(snap, "shop-in", []byte(`{}`), nil)
	ctx := context.Background()
	err := env.events.With(ctx, in.webhookID, func(db *storage.WebhookDB) error {
		return db.RecordAttempt(ctx,
			storage.DeliveryResult{DeliveryID: in.deliveries[0].ID, Attempt: 1, StartedAt: time.Now().Add(-time.Hour)},
			storage.DeliveryOutcome{Status: storage.DeliveryRetrying, NextAttemptAt: time.Now().Add(-time.Minute)})
	})
	if err != nil {
		t.Fatal(err)
	}
	env.start(snap, Options{})
	if d := env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered); d.Attempts != 2 {
		t.Errorf("attempts = %d, want 2", d.Attempts)
	}
}

func TestStopLetsAttemptInFlightFinishWithinGrace(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	tg := newTarget(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		// The attempt is still in flight when Stop waits, however slow
		// the machine: it answers only once the test has seen Stop waiting.
		select {
		case <-release:
		case <-r.Context().Done(): // cut short: the test has failed
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	env := newEnv(t)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, quick(3))))
	e := env.start(snap, Options{})
	in := env.send(e, snap, "shop-in", []byte(`{}`), nil)
	<-arrived

	timeout, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	grace := newWatchedContext(timeout)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		e.Stop(grace)
	}()
	// Stop consults its grace period only to wait: a Stop that did not
	// wait for the attempt would return instead.
	select {
	case <-grace.consulted:
	case <-stopped:
		t.Fatal("Stop returned without waiting for the attempt in flight")
	case <-time.After(waitTimeout):
		t.Fatal("Stop neither waited on its grace period nor returned")
	}
	select {
	case <-stopped:
		t.Fatal("Stop returned while the attempt was still in flight")
	default:
	}
	close(release)
	<-stopped

	d := env.delivery(in.webhookID, in.deliveries[0].ID)
	if d.Status != storage.DeliveryDelivered || d.Attempts != 1 {
		t.Errorf("after a stop with grace: delivery %+v, want delivered", d)
	}
	if rs := env.results(in.webhookID, d.ID); len(rs) != 1 || rs[0].StatusCode != 200 {
		t.Errorf("results = %+v", rs)
	}
}

// watchedContext is a context whose consulted channel is closed the first
// time its Done or Err is called: the sign that a Stop is waiting on its
// grace period.
type watchedContext struct {
	context.Context
	once      sync.Once
	consulted chan struct{}
}

func newWatchedContext(ctx context.Context) *watchedContext {
	return &watchedContext{Context: ctx, consulted: make(chan struct{})}
}

func (c *watchedContext) Done() <-chan struct{} {
	c.once.Do(func() { close(c.consulted) })
	return c.Context.Done()
}

func (c *watchedContext) Err() error {
	c.once.Do(func() { close(c.consulted) })
	return c.Context.Err()
}

func TestStopCutsShortAttemptBeyondGraceWithoutMarkingIt(t *testing.T) {
	t.Parallel()
	var hang atomic.Bool
	hang.Store(true)
	arrived := make(chan struct{}, 10)
	tg := newTarget(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if hang.Load() {
			arrived <- struct{}{}
			<-r.Context().Done()
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	env := newEnv(t)
	opts := quick(3)
	opts.Timeout = storage.Duration(time.Minute)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, opts)))
	e := env.start(snap, Options{})
	in := env.send(e, snap, "shop-in", []byte(`{}`), nil)
	<-arrived

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	e.Stop(ctx)
	d := env.delivery(in.webhookID, in.deliveries[0].ID)
	if d.Status != storage.DeliveryPending || d.Attempts != 0 {
		t.Errorf("after an attempt cut short: delivery %+v, want still pending", d)
	}
	if rs := env.results(in.webhookID, d.ID); len(rs) != 0 {
		t.Errorf("an attempt cut short by the stop was recorded: %+v", rs)
	}
	// After a Stop, a notification is not attempted (it stays pending in
	// the DB) and does not block.
	late := env.send(e, snap, "shop-in", []byte(`{}`), nil)

	// The next engine delivers both: at least once.
	hang.Store(false)
	env.start(snap, Options{})
	env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	env.waitStatus(late.webhookID, late.deliveries[0].ID, storage.DeliveryDelivered)
}

func TestStopKeepsRetryingDeliveriesForTheNextStart(t *testing.T) {
	t.Parallel()
	var healthy atomic.Bool
	tg := newTarget(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		if !healthy.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	env := newEnv(t)
	opts := quick(3)
	opts.BackoffInitial = storage.Duration(time.Hour)
	opts.BackoffMax = storage.Duration(time.Hour)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, opts)))
	e := env.start(snap, Options{})
	in := env.send(e, snap, "shop-in", []byte(`{}`), nil)
	d := env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryRetrying)
	// The outcome is committed before its retry is scheduled (outcomes.go):
	// the status can be read a moment before the due time is set.
	waitFor(t, "its retry timer", func() bool { return e.PendingTimers() == 1 }, waitTimeout)
	e.Stop(context.Background())
	if e.PendingTimers() != 0 {
		t.Errorf("%d timers left after Stop", e.PendingTimers())
	}
	after := env.delivery(in.webhookID, d.ID)
	if after.Status != storage.DeliveryRetrying || !after.NextAttemptAt.Equal(d.NextAttemptAt) {
		t.Errorf("after Stop: %+v, want retrying at %s", after, d.NextAttemptAt)
	}
	if wait := time.Until(after.NextAttemptAt); wait < 40*time.Minute {
		t.Errorf("next attempt in %s, want about an hour", wait)
	}
}

// goroutinesCreated is how many goroutines the process has ever started.
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// Not parallel: it counts the goroutines of the whole process. The engine
// runs in a synctest bubble, whose clock moves only when every goroutine in
// it is blocked: an hour of idleness passes at once, and whatever timer,
// ticker or poll the engine had set within that hour has fired, and run
// until it blocked, before the counts are compared.
func TestIdleEngineHoldsNoTimerAndStartsNoGoroutine(t *testing.T) {
	// The target lives outside the bubble: a goroutine waiting on the
	// network never counts as blocked in one, and its listener always waits.
	tg := newTarget(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		// No connection is left idle in the engine's client: the transport
		// would close it on a timer of its own (IdleConnTimeout), which is
		// not the engine's doing.
		w.Header().Set("Connection", "close")
		if n == 1 {
			http.Error(w, "once", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	synctest.Test(t, func(t *testing.T) {
		env := newEnv(t)
		snap := env.configure(webhook("shop",
			httpTarget("crm", tg.URL, quick(3)),
			storage.Target{Name: "archive", Type: storage.TargetDatabase},
			storage.Target{Name: "audit", Type: storage.TargetLog}))
		e := env.start(snap, Options{Workers: 4})

		var all []ingested
		for range 5 {
			all = append(all, env.send(e, snap, "shop-in", []byte(`{"x":1}`), nil))
		}
		for _, in := range all {
			for _, d := range in.deliveries {
				env.waitStatus(in.webhookID, d.ID, storage.DeliveryDelivered)
			}
		}
		if n := e.PendingTimers(); n != 0 {
			t.Errorf("%d timers pending with nothing to deliver", n)
		}
		// What finished the deliveries (connections, the scanner) has wound
		// down once every goroutine of the bubble is blocked.
		synctest.Wait()
		created, live := goroutinesCreated(), runtime.NumGoroutine()
		// The bubble's clock, not the machine's: this returns once every
		// timer of the bubble due within the hour has fired.
		time.Sleep(time.Hour)
		synctest.Wait()
		if more := goroutinesCreated() - created; more != 0 {
			t.Errorf("%d goroutines started in an hour of idleness", more)
		}
		if now := runtime.NumGoroutine(); now > live {
			t.Errorf("goroutines grew from %d to %d while idle", live, now)
		}
		if n := e.PendingTimers(); n != 0 {
			t.Errorf("%d timers pending while idle", n)
		}
		if fresh, retry := e.QueueLengths(); fresh != 0 || retry != 0 {
			t.Errorf("queues hold %d fresh and %d retry deliveries while idle", fresh, retry)
		}
	})
}

func TestStopTakesNoNewWorkWhileAttemptsFinish(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	tg := newTarget(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n <= 4 {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		_, _ = io.WriteString(w, "ok")
	})
	env := newEnv(t)
	opts := quick(3)
	opts.Timeout = storage.Duration(time.Minute)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, opts)))
	e := env.start(snap, Options{Workers: 4, QueueSize: 100, MaxPerTarget: 4})

	var all []ingested
	for range 12 {
		all = append(all, env.send(e, snap, "shop-in", []byte(`{}`), nil))
	}
	waitFor(t, "4 attempts in flight", func() bool { return tg.count() == 4 }, waitTimeout)

	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.Stop(ctx)
	}()
	waitFor(t, "the stop to begin", e.stopped, waitTimeout)
	close(release)
	<-stopped

	if n := tg.count(); n != 4 {
		t.Errorf("target got %d requests, want only the 4 in flight when the stop began", n)
	}
	delivered, pending := 0, 0
	for _, in := range all {
		switch d := env.delivery(in.webhookID, in.deliveries[0].ID); d.Status {
		case storage.DeliveryDelivered:
			delivered++
		case storage.DeliveryPending:
			pending++
		default:
			t.Errorf("delivery %+v", d)
		}
	}
	if delivered != 4 || pending != 8 {
		t.Errorf("%d delivered and %d pending after the stop, want 4 and 8", delivered, pending)
	}
}

func TestRecoveryScansEveryWebhook(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	var hooks []*storage.Webhook
	for _, name := range []string{"alpha", "beta", "gamma"} {
		// A log target: a database target's delivery is done in the ingest
		// transaction, leaving the scan nothing to find.
		hooks = append(hooks, webhook(name, storage.Target{Name: "audit", Type: storage.TargetLog}))
	}
	snap := env.configure(hooks...)
	var all []ingested
	for _, name := range []string{"alpha", "beta", "gamma"} {
		for range 3 {
			all = append(all, env.ingest(snap, name+"-in", []byte(`{}`), nil))
		}
	}
	env.start(snap, Options{})
	for _, in := range all {
		env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	}
}

func TestChangedTargetConfigAppliesToTheNextAttempt(t *testing.T) {
	t.Parallel()
	old := newTarget(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "moved away", http.StatusServiceUnavailable)
	})
	moved := newTarget(t, nil)
	env := newEnv(t)
	opts := quick(5)
	opts.BackoffInitial = storage.Duration(300 * time.Millisecond)
	opts.BackoffMax = storage.Duration(300 * time.Millisecond)
	snap := env.configure(webhook("shop", httpTarget("crm", old.URL, opts)))
	e := env.start(snap, Options{})

	in := env.send(e, snap, "shop-in", []byte(`{"v":1}`), nil)
	env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryRetrying)
	opts.Headers = map[string]string{"X-Config": "v2"}
	e.SetSnapshot(env.configure(webhook("shop", httpTarget("crm", moved.URL, opts))))

	d := env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	if d.Attempts != 2 {
		t.Errorf("attempts = %d, want 2", d.Attempts)
	}
	reqs := moved.all()
	if len(reqs) != 1 || reqs[0].header.Get("X-Config") != "v2" || string(reqs[0].body) != `{"v":1}` {
		t.Errorf("the new URL got %d requests (%+v)", len(reqs), reqs)
	}
	if n := old.count(); n != 1 {
		t.Errorf("the old URL got %d requests, want 1", n)
	}
}
