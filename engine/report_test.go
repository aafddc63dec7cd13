package engine

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/webhooker/caddy-webhooker/storage"
)

// watcher is an Observer that keeps what it is told, in order.
type watcher struct {
	mu        sync.Mutex
	attempts  []AttemptInfo
	exhausted []AttemptInfo
	opened    []TargetInfo
	retryAt   []time.Time
	openedErr []string
	closed    []TargetInfo
	order     []string
}

func (w *watcher) AttemptRecorded(a AttemptInfo) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.attempts = append(w.attempts, a)
	w.order = append(w.order, "attempt "+string(a.Status))
}

func (w *watcher) DeliveryExhausted(a AttemptInfo) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.exhausted = append(w.exhausted, a)
	w.order = append(w.order, "exhausted")
}

func (w *watcher) BreakerOpened(t TargetInfo, retryAt time.Time, lastError string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.opened, w.retryAt, w.openedErr = append(w.opened, t), append(w.retryAt, retryAt), append(w.openedErr, lastError)
	w.order = append(w.order, "opened")
}

func (w *watcher) BreakerClosed(t TargetInfo) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = append(w.closed, t)
	w.order = append(w.order, "closed")
}

func (w *watcher) snapshot() watcher {
	w.mu.Lock()
	defer w.mu.Unlock()
	return watcher{attempts: append([]AttemptInfo(nil), w.attempts...), exhausted: append([]AttemptInfo(nil), w.exhausted...),
		opened: append([]TargetInfo(nil), w.opened...), retryAt: append([]time.Time(nil), w.retryAt...),
		openedErr: append([]string(nil), w.openedErr...), closed: append([]TargetInfo(nil), w.closed...),
		order: append([]string(nil), w.order...)}
}

// logged is the one entry with message msg, failing the test if there is
// not exactly one.
func logged(t *testing.T, logs *observer.ObservedLogs, msg string) observer.LoggedEntry {
	t.Helper()
	entries := logs.FilterMessage(msg).All()
	if len(entries) != 1 {
		t.Fatalf("%d log entries %q, want 1: %v", len(entries), msg, logs.All())
	}
	return entries[0]
}

// A target that fails until the delivery gives up: every attempt is told
// with the names in force, the give-up once, after its attempt, with one
// WARN line that names the webhook and target.
func TestGivingUpIsToldAndLoggedOnce(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	})
	env := newEnv(t)
	opts := quick(2)
	opts.BreakerThreshold = intp(0)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, opts)))
	w := &watcher{}
	var recorded atomic.Int64
	e := env.start(snap, Options{Observer: w, Recorded: func(storage.TargetType, storage.DeliveryStatus) { recorded.Add(1) }})

	in := env.send(e, snap, "shop-in", []byte(`{}`), nil)
	d := env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryFailed)
	waitFor(t, "the give-up to be told", func() bool { return len(w.snapshot().exhausted) == 1 }, waitTimeout)

	got := w.snapshot()
	if want := []string{"attempt retrying", "attempt retrying", "attempt failed", "exhausted"}; strings.Join(got.order, ",") != strings.Join(want, ",") {
		t.Errorf("observer told %v, want %v", got.order, want)
	}
	for i, a := range got.attempts {
		if a.WebhookName != "shop" || a.TargetName != "crm" || a.TargetType != storage.TargetHTTP || a.EventID != in.event.ID ||
			a.DeliveryID != d.ID || a.Attempt != i+1 || a.StatusCode != 500 || a.Error != "target answered 500" || a.Duration <= 0 {
			t.Errorf("attempt %d told as %+v", i+1, a)
		}
	}
	if x := got.exhausted[0]; x.Attempt != 3 || x.Status != storage.DeliveryFailed || x.WebhookID != in.webhookID {
		t.Errorf("exhausted told as %+v", x)
	}
	if n := recorded.Load(); n != 3 {
		t.Errorf("Options.Recorded told %d times, want 3", n)
	}

	entry := logged(t, env.logs, "delivery gave up")
	f := entry.ContextMap()
	if entry.Level != zapcore.WarnLevel || f["webhook"] != "shop" || f["target"] != "crm" || f["event_id"] != in.event.ID ||
		f["delivery_id"] != d.ID || f["attempts"] != int64(3) || f["last_error"] != d.LastError ||
		!strings.Contains(d.LastError, "gave up after 3 attempts: target answered 500") {
		t.Errorf("gave-up line: %s %v (delivery's last error %q)", entry.Level, f, d.LastError)
	}
	// The retries themselves are no news for the log.
	for _, entry := range env.logs.All() {
		if entry.Level >= zapcore.InfoLevel && entry.Message != "delivery gave up" && entry.Message != "recovered deliveries" {
			t.Errorf("unexpected log line: %s %s %v", entry.Level, entry.Message, entry.ContextMap())
		}
	}
}

// Deliveries that succeed are told to the observer, every target type
// alike, and write nothing to the log (but what the log target writes).
func TestSuccessfulDeliveriesAreToldButNotLogged(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, nil)
	env := newEnv(t)
	snap := env.configure(webhook("shop",
		httpTarget("crm", tg.URL, quick(2)),
		storage.Target{Name: "archive", Type: storage.TargetDatabase},
		storage.Target{Name: "audit", Type: storage.TargetLog}))
	w := &watcher{}
	e := env.start(snap, Options{Observer: w})
	var sent []ingested
	for range 5 {
		sent = append(sent, env.send(e, snap, "shop-in", []byte(`{}`), nil))
	}
	for _, in := range sent {
		for _, d := range in.deliveries {
			env.waitStatus(in.webhookID, d.ID, storage.DeliveryDelivered)
		}
	}
	// The database target's delivery is stored delivered by the ingest:
	// no attempt of the engine's.
	waitFor(t, "10 attempts told", func() bool { return len(w.snapshot().attempts) >= 10 }, waitTimeout)
	if n := len(w.snapshot().attempts); n != 10 {
		t.Errorf("%d attempts told, want 10", n)
	}
	byType := map[storage.TargetType]int{}
	for _, a := range w.snapshot().attempts {
		if a.Status != storage.DeliveryDelivered || a.WebhookName != "shop" || a.Error != "" {
			t.Errorf("told %+v", a)
		}
		byType[a.TargetType]++
	}
	if byType[storage.TargetHTTP] != 5 || byType[storage.TargetLog] != 5 {
		t.Errorf("attempts told by target type: %v", byType)
	}
	for _, entry := range env.logs.All() {
		if entry.Level >= zapcore.InfoLevel && entry.Message != "webhook event" && entry.Message != "recovered deliveries" {
			t.Errorf("a successful delivery logged: %s %s %v", entry.Level, entry.Message, entry.ContextMap())
		}
	}
}

// A breaker that opens is told and logged once (WARN, with the failures,
// when it probes again and the last error), and once it closes (INFO);
// BreakerStates lists it while it is not closed.
func TestBreakerOpeningAndClosingAreToldAndLogged(t *testing.T) {
	t.Parallel()
	var healthy atomic.Bool
	tg := newTarget(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		if !healthy.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	env := newEnv(t)
	const cooldown = 300 * time.Millisecond
	opts := quick(100)
	opts.BreakerThreshold = intp(2)
	opts.BreakerCooldown = storage.Duration(cooldown)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, opts)))
	targetID := snap.Webhooks()[0].Targets[0].ID
	w := &watcher{}
	e := env.start(snap, Options{Observer: w})

	if s := e.BreakerStates(); len(s) != 0 {
		t.Errorf("breaker states before any attempt: %v", s)
	}
	in := env.send(e, snap, "shop-in", []byte(`{}`), nil)
	waitFor(t, "the breaker to open", func() bool { return len(w.snapshot().opened) == 1 }, waitTimeout)
	if s := e.BreakerStates(); s[targetID] != "open" && s[targetID] != "half-open" {
		t.Errorf("breaker states while open: %v", s)
	}
	entry := logged(t, env.logs, "circuit breaker opened")
	f := entry.ContextMap()
	got := w.snapshot()
	if entry.Level != zapcore.WarnLevel || f["webhook"] != "shop" || f["target"] != "crm" || f["failures"] != int64(2) ||
		f["last_error"] != "target answered 500" {
		t.Errorf("opened line: %s %v", entry.Level, f)
	}
	if at, ok := f["retry_at"].(time.Time); !ok || !at.Equal(got.retryAt[0]) {
		t.Errorf("opened line's retry_at %v, told %v", f["retry_at"], got.retryAt[0])
	}
	if o := got.opened[0]; o.WebhookName != "shop" || o.TargetName != "crm" || o.TargetID != targetID || o.WebhookID != in.webhookID ||
		got.openedErr[0] != "target answered 500" || time.Until(got.retryAt[0]) > cooldown {
		t.Errorf("opened told as %+v, %v, %q", o, got.retryAt[0], got.openedErr[0])
	}

	healthy.Store(true)
	env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	waitFor(t, "the breaker to close", func() bool { return len(w.snapshot().closed) == 1 }, waitTimeout)
	entry = logged(t, env.logs, "circuit breaker closed")
	if f := entry.ContextMap(); entry.Level != zapcore.InfoLevel || f["webhook"] != "shop" || f["target"] != "crm" {
		t.Errorf("closed line: %s %v", entry.Level, f)
	}
	if c := w.snapshot().closed[0]; c.TargetName != "crm" || c.TargetID != targetID {
		t.Errorf("closed told as %+v", c)
	}
	if s := e.BreakerStates(); len(s) != 0 {
		t.Errorf("breaker states once closed: %v", s)
	}
	if n := len(w.snapshot().opened); n != 1 {
		t.Errorf("opened told %d times, want 1", n)
	}
}

// After a restart, one INFO line says what recovery picked up once every
// start-up scan is done; a stop says what it left.
func TestRecoveryAndStopAreLoggedWithCounts(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, nil)
	env := newEnv(t)
	snap := env.configure(
		webhook("shop", httpTarget("crm", tg.URL, quick(3))),
		webhook("quiet", storage.Target{Name: "archive", Type: storage.TargetDatabase}))
	ctx := context.Background()
	// Left behind by a killed process: two pending, one retrying in an
	// hour, one pending whose attempt was in flight.
	pending := []ingested{env.ingest(snap, "shop-in", []byte(`{}`), nil), env.ingest(snap, "shop-in", []byte(`{}`), nil)}
	retrying, marked := env.ingest(snap, "shop-in", []byte(`{}`), nil), env.ingest(snap, "shop-in", []byte(`{}`), nil)
	err := env.events.With(ctx, retrying.webhookID, func(db *storage.WebhookDB) error {
		if err := db.RecordAttempt(ctx, storage.DeliveryResult{DeliveryID: retrying.deliveries[0].ID, Attempt: 1, StartedAt: time.Now(), Error: "x"},
			storage.DeliveryOutcome{Status: storage.DeliveryRetrying, NextAttemptAt: time.Now().Add(time.Hour), LastError: "x"}); err != nil {
			return err
		}
		return db.MarkAttemptStarted(ctx, marked.deliveries[0].ID, time.Now())
	})
	if err != nil {
		t.Fatal(err)
	}

	e := env.start(snap, Options{})
	for _, in := range append(pending, marked) {
		env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	}
	waitFor(t, "the recovery line", func() bool { return env.logs.FilterMessage("recovered deliveries").Len() == 1 }, waitTimeout)
	entry := logged(t, env.logs, "recovered deliveries")
	want := map[string]any{"pending_run_now": int64(2), "retrying_on_timers": int64(1),
		"interrupted_attempts_counted": int64(1), "webhooks_scanned": int64(2)}
	for k, v := range want {
		if entry.ContextMap()[k] != v || entry.Level != zapcore.InfoLevel {
			t.Errorf("recovery line %s %v: want %s=%v", entry.Level, entry.ContextMap(), k, v)
		}
	}

	stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.Stop(stopCtx)
	entry = logged(t, env.logs, "delivery engine stopped")
	want = map[string]any{"deliveries_queued": int64(0), "on_retry_timers": int64(1), "parked": int64(0), "attempts_cut_short": int64(0)}
	for k, v := range want {
		if entry.ContextMap()[k] != v {
			t.Errorf("stop line %v: want %s=%v", entry.ContextMap(), k, v)
		}
	}
}

// An attempt a stop cuts short is counted in the stop's line.
func TestStopLogsAttemptsCutShort(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	tg := newTarget(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done()
	})
	env := newEnv(t)
	opts := quick(3)
	opts.Timeout = storage.Duration(time.Minute)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, opts)))
	e := env.start(snap, Options{})
	env.send(e, snap, "shop-in", []byte(`{}`), nil)
	<-arrived
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	e.Stop(ctx)
	if f := logged(t, env.logs, "delivery engine stopped").ContextMap(); f["attempts_cut_short"] != int64(1) {
		t.Errorf("stop line %v: want attempts_cut_short=1", f)
	}
}

// A delivery whose attempt was in flight when the process died, its retries
// spent by that attempt, gives up at the next start: told and logged.
func TestCrashLoopMarkThatSpendsTheRetriesIsToldAsGivingUp(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, nil)
	env := newEnv(t)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, quick(0))))
	in := env.ingest(snap, "shop-in", []byte(`{}`), nil)
	id := in.deliveries[0].ID
	ctx := context.Background()
	if err := env.events.With(ctx, in.webhookID, func(db *storage.WebhookDB) error {
		return db.MarkAttemptStarted(ctx, id, time.Now())
	}); err != nil {
		t.Fatal(err)
	}
	w := &watcher{}
	env.start(snap, Options{Observer: w})
	d := env.waitStatus(in.webhookID, id, storage.DeliveryFailed)
	waitFor(t, "the give-up to be told", func() bool { return len(w.snapshot().exhausted) == 1 }, waitTimeout)
	got := w.snapshot()
	if strings.Join(got.order, ",") != "attempt failed,exhausted" {
		t.Errorf("observer told %v", got.order)
	}
	if x := got.exhausted[0]; x.Error != InterruptedError || x.EventID != in.event.ID || x.TargetName != "crm" || x.WebhookName != "shop" {
		t.Errorf("exhausted told as %+v", x)
	}
	if f := logged(t, env.logs, "delivery gave up").ContextMap(); f["last_error"] != d.LastError || f["event_id"] != in.event.ID || f["attempts"] != int64(1) {
		t.Errorf("gave-up line %v", f)
	}
	if n := tg.count(); n != 0 {
		t.Errorf("%d requests: the spent delivery was sent again", n)
	}
}
