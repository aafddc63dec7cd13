package engine

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/webhooker/caddy-webhooker/storage"
)

func TestHTTPDeliveryForwardsBodyAndEndToEndHeaders(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "thanks, got it")
	})
	env := newEnv(t)
	opts := quick(3)
	opts.Headers = map[string]string{"X-Api-Key": "k-123", "X-Shop-Signature": "from-config"}
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, opts)))
	e := env.start(snap, Options{})

	h := http.Header{}
	h.Set("Content-Type", "application/vnd.shop+json; charset=utf-8")
	h.Set("X-Event-Kind", "order.created")
	h.Add("X-Multi", "one")
	h.Add("X-Multi", "two")
	h.Set("X-Shop-Signature", "from-event")
	h.Set("User-Agent", "Shop-Webhooks/1.0")
	h.Set("Connection", "keep-alive, X-Hop-Named")
	h.Set("X-Hop-Named", "only for the first hop")
	h.Set("Keep-Alive", "timeout=5")
	h.Set("Transfer-Encoding", "chunked")
	h.Set("Te", "trailers")
	h.Set("Upgrade", "websocket")
	h.Set("Proxy-Authorization", "Basic cHJveHk6c2VjcmV0")
	h.Set("Content-Length", "999")
	body := []byte(`{"order":42,"items":["a","b"]}`)

	before := time.Now().Unix()
	in := env.send(e, snap, "shop-in", body, h)
	d := env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	after := time.Now().Unix()

	reqs := tg.all()
	if len(reqs) != 1 {
		t.Fatalf("target got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if !bytes.Equal(r.body, body) {
		t.Errorf("body = %q, want %q", r.body, body)
	}
	for name, want := range map[string]string{
		"Content-Type":     "application/vnd.shop+json; charset=utf-8",
		"X-Event-Kind":     "order.created",
		"X-Shop-Signature": "from-config", // configured headers win over the event's
		"X-Api-Key":        "k-123",
		"User-Agent":       "Shop-Webhooks/1.0", // the sender's
		VersionHeader:      UserAgent,
		"Webhook-Id":       MessageID(in.event.ID, in.deliveries[0].TargetID),
		"Content-Length":   strconv.Itoa(len(body)),
	} {
		if got := r.header.Get(name); got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	if got := r.header.Values("X-Multi"); len(got) != 2 || got[0] != "one" || got[1] != "two" {
		t.Errorf("X-Multi = %q, want [one two]", got)
	}
	for _, name := range []string{"Connection", "Keep-Alive", "Transfer-Encoding", "Te", "Upgrade",
		"Proxy-Authorization", "X-Hop-Named"} {
		if v, ok := r.header[name]; ok {
			t.Errorf("hop-by-hop header %s forwarded: %q", name, v)
		}
	}
	if r.host == "gateway.example" {
		t.Error("the event's Host was forwarded")
	}
	ts, err := strconv.ParseInt(r.header.Get("Webhook-Timestamp"), 10, 64)
	if err != nil || ts < before || ts > after {
		t.Errorf("webhook-timestamp = %q, want Unix seconds in [%d, %d]", r.header.Get("Webhook-Timestamp"), before, after)
	}

	if d.Attempts != 1 || d.LastError != "" || !d.NextAttemptAt.IsZero() {
		t.Errorf("delivery = %+v", d)
	}
	rs := env.results(in.webhookID, d.ID)
	if len(rs) != 1 {
		t.Fatalf("%d results, want 1", len(rs))
	}
	if rs[0].Attempt != 1 || rs[0].StatusCode != 200 || rs[0].Error != "" ||
		string(rs[0].ResponseBody) != "thanks, got it" || rs[0].StartedAt.IsZero() || rs[0].Duration <= 0 {
		t.Errorf("result = %+v (response %q)", rs[0], rs[0].ResponseBody)
	}
	env.noErrorLogs()
}

func TestHTTPResponseExcerptIsBounded(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 100<<10)
	tg := newTarget(t, func(_ int, w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, big) })
	env := newEnv(t)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, quick(0))))
	e := env.start(snap, Options{})
	in := env.send(e, snap, "shop-in", []byte("{}"), nil)
	env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	rs := env.results(in.webhookID, in.deliveries[0].ID)
	if len(rs) != 1 || len(rs[0].ResponseBody) != responseExcerpt {
		t.Fatalf("results = %d, excerpt of %d bytes, want 1 of %d", len(rs), len(rs[0].ResponseBody), responseExcerpt)
	}
}

func TestHTTPServerErrorIsRetriedThenDelivered(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			http.Error(w, "database is down", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	env := newEnv(t)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, quick(3))))
	e := env.start(snap, Options{})

	in := env.send(e, snap, "shop-in", []byte(`{"n":1}`), nil)
	d := env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	if d.Attempts != 2 {
		t.Errorf("attempts = %d, want 2", d.Attempts)
	}
	rs := env.results(in.webhookID, d.ID)
	if len(rs) != 2 {
		t.Fatalf("%d results, want 2", len(rs))
	}
	if rs[0].Attempt != 1 || rs[0].StatusCode != 500 || !strings.Contains(rs[0].Error, "500") ||
		!strings.Contains(string(rs[0].ResponseBody), "database is down") {
		t.Errorf("first attempt = %+v", rs[0])
	}
	if rs[1].Attempt != 2 || rs[1].StatusCode != 200 || rs[1].Error != "" {
		t.Errorf("second attempt = %+v", rs[1])
	}
	reqs := tg.all()
	if len(reqs) != 2 {
		t.Fatalf("target got %d requests, want 2", len(reqs))
	}
	for i, r := range reqs {
		if got, want := r.header.Get("Webhook-Id"), MessageID(in.event.ID, d.TargetID); got != want {
			t.Errorf("request %d: webhook-id %q, want the message id %q", i+1, got, want)
		}
		if !bytes.Equal(r.body, []byte(`{"n":1}`)) {
			t.Errorf("request %d: body %q", i+1, r.body)
		}
	}
	// The retry waits for its backoff: 20ms less 20% jitter.
	if gap := reqs[1].at.Sub(reqs[0].at); gap < 16*time.Millisecond {
		t.Errorf("retry came %s after the failure, before its backoff", gap)
	}
	waitFor(t, "no retry timer left", func() bool { return e.PendingTimers() == 0 }, waitTimeout)
	env.noErrorLogs()
}

func TestHTTPExhaustedRetriesEndFailed(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "nope", http.StatusInternalServerError)
	})
	env := newEnv(t)
	opts := quick(2)
	opts.BreakerThreshold = intp(0)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, opts)))
	e := env.start(snap, Options{})

	in := env.send(e, snap, "shop-in", []byte("{}"), nil)
	d := env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryFailed)
	if d.Attempts != 3 {
		t.Errorf("attempts = %d, want 3 (1 + max_retries 2)", d.Attempts)
	}
	if !strings.Contains(d.LastError, "gave up after 3 attempts") || !strings.Contains(d.LastError, "500") {
		t.Errorf("last_error = %q", d.LastError)
	}
	if !d.NextAttemptAt.IsZero() {
		t.Errorf("a failed delivery has next_attempt_at %s", d.NextAttemptAt)
	}
	rs := env.results(in.webhookID, d.ID)
	if len(rs) != 3 {
		t.Fatalf("%d results, want 3", len(rs))
	}
	for i, r := range rs {
		if r.Attempt != i+1 || r.StatusCode != 500 || r.Error == "" {
			t.Errorf("attempt %d = %+v", i+1, r)
		}
	}
	if e.PendingTimers() != 0 {
		t.Errorf("%d timers left after the delivery failed", e.PendingTimers())
	}
	if n := tg.count(); n != 3 {
		t.Errorf("target got %d requests, want 3", n)
	}
}

func TestHTTPRetryAfterIsHonouredWithinBounds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		retryAfter string
		backoffMax time.Duration
	}{
		// Longer than the backoff (20ms): the target's wish is honoured.
		{"one second", "1", 5 * time.Second},
		// Longer than backoff_max: cut to backoff_max, not an hour.
		{"an hour cut to backoff_max", "3600", time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tg := newTarget(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				if n == 1 {
					w.Header().Set("Retry-After", tc.retryAfter)
					http.Error(w, "busy", http.StatusServiceUnavailable)
					return
				}
				_, _ = io.WriteString(w, "ok")
			})
			env := newEnv(t)
			opts := quick(3)
			opts.BackoffMax = storage.Duration(tc.backoffMax)
			snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, opts)))
			e := env.start(snap, Options{})

			in := env.send(e, snap, "shop-in", []byte("{}"), nil)
			retrying := env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryRetrying)
			d := env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
			rs := env.results(in.webhookID, d.ID)
			if len(rs) != 2 || rs[0].StatusCode != 503 {
				t.Fatalf("results = %+v", rs)
			}
			reqs := tg.all()
			gap := reqs[1].at.Sub(reqs[0].at)
			if gap < 900*time.Millisecond {
				t.Errorf("retry came %s after a 503 with Retry-After: %s", gap, tc.retryAfter)
			}
			if gap > 5*time.Second {
				t.Errorf("retry came %s after the 503, beyond the bound", gap)
			}
			if wait := retrying.NextAttemptAt.Sub(rs[0].StartedAt); wait < 900*time.Millisecond || wait > 2*time.Second {
				t.Errorf("stored next_attempt_at is %s after the attempt, want about 1s", wait)
			}
		})
	}
}

func TestHTTPRedirectIsNotFollowed(t *testing.T) {
	t.Parallel()
	elsewhere := newTarget(t, nil)
	tg := newTarget(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/moved", http.StatusFound)
	})
	env := newEnv(t)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, quick(1))))
	e := env.start(snap, Options{})

	in := env.send(e, snap, "shop-in", []byte("{}"), nil)
	d := env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryFailed)
	rs := env.results(in.webhookID, d.ID)
	if len(rs) != 2 {
		t.Fatalf("%d results, want 2", len(rs))
	}
	for _, r := range rs {
		if r.StatusCode != http.StatusFound || !strings.Contains(r.Error, "302") || !strings.Contains(r.Error, "not followed") {
			t.Errorf("attempt = %+v", r)
		}
	}
	if n := elsewhere.count(); n != 0 {
		t.Errorf("the redirect's location got %d requests", n)
	}
	if n := tg.count(); n != 2 {
		t.Errorf("target got %d requests, want 2", n)
	}
}

func TestHTTPTimeoutIsAnErrorAndRetried(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	env := newEnv(t)
	opts := quick(3)
	opts.Timeout = storage.Duration(150 * time.Millisecond)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, opts)))
	e := env.start(snap, Options{})

	in := env.send(e, snap, "shop-in", []byte("{}"), nil)
	d := env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	rs := env.results(in.webhookID, d.ID)
	if len(rs) != 2 {
		t.Fatalf("%d results, want 2", len(rs))
	}
	if rs[0].StatusCode != 0 || !strings.Contains(rs[0].Error, "timeout") || !strings.Contains(rs[0].Error, "150ms") {
		t.Errorf("first attempt = %+v, want an error naming the timeout", rs[0])
	}
	if rs[0].Duration < 150*time.Millisecond {
		t.Errorf("first attempt took %s, less than the timeout", rs[0].Duration)
	}
	if rs[1].StatusCode != 200 {
		t.Errorf("second attempt = %+v", rs[1])
	}
}

func TestHTTPGoneStopsRetrying(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "this hook was deleted", http.StatusGone)
	})
	env := newEnv(t)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, quick(5))))
	e := env.start(snap, Options{})

	in := env.send(e, snap, "shop-in", []byte("{}"), nil)
	d := env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryFailed)
	if d.Attempts != 1 || !strings.Contains(d.LastError, "410") {
		t.Errorf("delivery = %+v", d)
	}
	rs := env.results(in.webhookID, d.ID)
	if len(rs) != 1 || rs[0].StatusCode != http.StatusGone {
		t.Errorf("results = %+v", rs)
	}
	if e.PendingTimers() != 0 {
		t.Error("a retry is scheduled after 410 Gone")
	}
	if n := tg.count(); n != 1 {
		t.Errorf("target got %d requests, want 1", n)
	}
}

func TestCircuitBreakerOpensHoldsProbesAndCloses(t *testing.T) {
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
	e := env.start(snap, Options{})

	first := env.send(e, snap, "shop-in", []byte(`{"n":1}`), nil)
	waitFor(t, "the breaker to open", func() bool { return e.BreakerState(targetID) == "open" }, waitTimeout)
	openedRequests := tg.count()
	if openedRequests != 2 {
		t.Errorf("breaker opened after %d requests, want threshold 2", openedRequests)
	}

	// While open, new deliveries are held without an attempt.
	held := []ingested{
		env.send(e, snap, "shop-in", []byte(`{"n":2}`), nil),
		env.send(e, snap, "shop-in", []byte(`{"n":3}`), nil),
	}
	for _, in := range held {
		d := env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryRetrying)
		if d.Attempts != 0 || d.NextAttemptAt.IsZero() {
			t.Errorf("held delivery = %+v, want 0 attempts and a next_attempt_at", d)
		}
		if rs := env.results(in.webhookID, d.ID); len(rs) != 0 {
			t.Errorf("held delivery has %d results", len(rs))
		}
	}
	d := env.delivery(first.webhookID, first.deliveries[0].ID)
	if d.Status != storage.DeliveryRetrying || d.NextAttemptAt.IsZero() {
		t.Errorf("first delivery while open = %+v", d)
	}
	if state := e.BreakerState(targetID); state == "open" && d.Attempts != 2 {
		t.Errorf("first delivery has %d attempts while the breaker is still open, want 2", d.Attempts)
	}

	healthy.Store(true)
	for _, in := range append(held, first) {
		env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	}
	if state := e.BreakerState(targetID); state != "closed" {
		t.Errorf("breaker %s after deliveries went through, want closed", state)
	}

	reqs := tg.all()
	// Nothing reached the target for a cooldown after it opened; then one
	// probe went alone, and the rest only once it had succeeded.
	if gap := reqs[2].at.Sub(reqs[1].at); gap < cooldown {
		t.Errorf("a request came %s after the breaker opened, within the cooldown of %s", gap, cooldown)
	}
	if len(reqs) != 5 {
		t.Errorf("target got %d requests, want 2 failures + 1 probe + 2 held", len(reqs))
	}
	for _, in := range held {
		if d := env.delivery(in.webhookID, in.deliveries[0].ID); d.Attempts != 1 {
			t.Errorf("held delivery took %d attempts, want 1: holding counts none", d.Attempts)
		}
	}
	waitFor(t, "no timer left", func() bool { return e.PendingTimers() == 0 }, waitTimeout)
	env.noErrorLogs()
}

// Deliveries an open breaker holds go as soon as a probe succeeds, not a
// further cooldown later.
func TestHeldDeliveriesGoWhenTheProbeSucceeds(t *testing.T) {
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
	const cooldown = 2 * time.Second
	opts := quick(100)
	opts.BreakerThreshold = intp(1)
	opts.BreakerCooldown = storage.Duration(cooldown)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, opts)))
	targetID := snap.Webhooks()[0].Targets[0].ID
	e := env.start(snap, Options{})

	first := env.send(e, snap, "shop-in", []byte(`{"n":0}`), nil)
	waitFor(t, "the breaker to open", func() bool { return e.BreakerState(targetID) == "open" }, waitTimeout)
	var held []ingested
	for n := 1; n <= 5; n++ {
		held = append(held, env.send(e, snap, "shop-in", []byte(fmt.Sprintf(`{"n":%d}`, n)), nil))
	}
	for _, in := range held {
		env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryRetrying)
	}
	healthy.Store(true)
	for _, in := range append(held, first) {
		env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	}
	reqs := tg.all()
	probe := reqs[1].at // reqs[0] is the failure that opened it
	last := reqs[len(reqs)-1].at
	if wait := last.Sub(probe); wait >= cooldown/2 {
		t.Errorf("held deliveries went %s after the successful probe: they waited for a further cooldown (%s)", wait, cooldown)
	}
	waitFor(t, "no timer left", func() bool { return e.PendingTimers() == 0 }, waitTimeout)
	env.noErrorLogs()
}

func TestLargeBodyIsReadFromTheEventDBWhenTheAttemptRuns(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, nil)
	env := newEnv(t)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, quick(0))))
	e := env.start(snap, Options{})

	body := make([]byte, 100<<10)
	if _, err := rand.Read(body); err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Content-Type": {"application/octet-stream"}}
	in := env.ingest(snap, "shop-in", body, h)
	if in.tasks[0].Body != nil {
		t.Fatal("a 100 KiB body rides in the task")
	}
	if in.tasks[0].Event.BodySize != len(body) {
		t.Errorf("task body size = %d", in.tasks[0].Event.BodySize)
	}
	e.Notify(in.tasks)
	env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	reqs := tg.all()
	if len(reqs) != 1 || !bytes.Equal(reqs[0].body, body) {
		t.Fatalf("target did not get the exact 100 KiB body (%d requests)", len(reqs))
	}
	if got := reqs[0].header.Get("Content-Type"); got != "application/octet-stream" {
		t.Errorf("content-type = %q", got)
	}
}

func TestSmallBodyIsDeliveredFromTheTask(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, nil)
	env := newEnv(t)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, quick(0))))
	e := env.start(snap, Options{})

	in := env.ingest(snap, "shop-in", []byte(`{"stored":true}`), nil)
	if in.tasks[0].Body == nil || *in.tasks[0].Body != `{"stored":true}` {
		t.Fatal("a small body is not inline in the task")
	}
	// Prove the engine sends the task's body and does not read the event
	// DB for it: a body of the same size that differs from the stored one.
	inline := strings.Repeat("i", len(*in.tasks[0].Body))
	in.tasks[0].Body = &inline
	e.Notify(in.tasks)
	env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	if reqs := tg.all(); len(reqs) != 1 || string(reqs[0].body) != inline {
		t.Fatalf("target got %d requests, body %q; want the task's body", len(reqs), reqs[0].body)
	}
}

func TestFullQueuesCatchUpFromTheDBAndDeliverEachOnce(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	tg := newTarget(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	released := false
	t.Cleanup(func() {
		if !released {
			close(release)
		}
	})
	env := newEnv(t)
	opts := quick(3)
	opts.Timeout = storage.Duration(30 * time.Second)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, opts)))
	e := env.start(snap, Options{Workers: 1, QueueSize: 1, RetryQueueSize: 1})

	const n = 50
	all := sendNumbered(env, e, snap, "shop-in", 0, n)
	waitFor(t, "the first request to reach the target", func() bool { return tg.count() >= 1 }, waitTimeout)
	close(release)
	released = true

	for _, in := range all {
		d := env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
		if d.Attempts != 1 {
			t.Errorf("delivery %s took %d attempts", d.ID, d.Attempts)
		}
	}
	perID := map[string]int{}
	for _, r := range tg.all() {
		perID[r.header.Get("Webhook-Id")]++
	}
	for _, in := range all {
		if c := perID[MessageID(in.event.ID, in.deliveries[0].TargetID)]; c != 1 {
			t.Errorf("delivery %s reached the target %d times, want 1", in.deliveries[0].ID, c)
		}
	}
	if len(perID) != n {
		t.Errorf("target saw %d distinct deliveries, want %d", len(perID), n)
	}
	env.noErrorLogs()
}

func TestRemovedTargetFailsItsDeliveries(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, nil)
	env := newEnv(t)
	snap := env.configure(webhook("shop",
		storage.Target{Name: "audit", Type: storage.TargetLog},
		httpTarget("old-crm", tg.URL, quick(3))))

	// One event waits in the DB (found by the start scan), one will be
	// notified with tasks built under the old configuration.
	waiting := env.ingest(snap, "shop-in", []byte(`{"n":1}`), nil)
	notified := env.ingest(snap, "shop-in", []byte(`{"n":2}`), nil)

	snap2 := env.configure(webhook("shop", storage.Target{Name: "audit", Type: storage.TargetLog}))
	e := env.start(snap2, Options{})
	e.Notify(notified.tasks)

	for _, in := range []ingested{waiting, notified} {
		env.waitStatus(in.webhookID, in.to(t, "audit").ID, storage.DeliveryDelivered)
		d := env.waitStatus(in.webhookID, in.to(t, "old-crm").ID, storage.DeliveryFailed)
		if !strings.Contains(d.LastError, "removed") {
			t.Errorf("last_error = %q, want it to say the target was removed", d.LastError)
		}
	}
	if n := tg.count(); n != 0 {
		t.Errorf("removed target got %d requests", n)
	}
}

func TestDatabaseAndLogTargetsAreDeliveredAtOnce(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	snap := env.configure(webhook("shop",
		storage.Target{Name: "archive", Type: storage.TargetDatabase},
		storage.Target{Name: "audit", Type: storage.TargetLog}))
	e := env.start(snap, Options{})

	h := http.Header{}
	h.Set("Authorization", "Bearer top-secret")
	h.Set("X-Event-Kind", "order.created")
	small := env.send(e, snap, "shop-in", []byte(`{"order":42}`), h)
	large := env.send(e, snap, "shop-in", bytes.Repeat([]byte("L"), InlineBodyLimit+1), nil)

	for _, in := range []ingested{small, large} {
		for _, del := range in.deliveries {
			d := env.waitStatus(in.webhookID, del.ID, storage.DeliveryDelivered)
			if rs := env.results(in.webhookID, d.ID); d.Attempts != 1 || len(rs) != 1 || rs[0].Error != "" {
				t.Errorf("delivery %+v, results %+v", d, rs)
			}
		}
	}

	entries := env.logs.FilterMessage("webhook event").All()
	if len(entries) != 2 {
		t.Fatalf("%d events logged, want 2", len(entries))
	}
	byID := map[string]map[string]any{}
	headers := map[string]http.Header{}
	for _, entry := range entries {
		if entry.Level != zapcore.InfoLevel {
			t.Errorf("event logged at %s", entry.Level)
		}
		m := entry.ContextMap()
		id, _ := m["event_id"].(string)
		byID[id] = m
		for _, f := range entry.Context {
			if f.Key == "headers" {
				hh, ok := f.Interface.(http.Header)
				if !ok {
					t.Fatalf("headers field is %T", f.Interface)
				}
				headers[id] = hh
			}
		}
	}
	m := byID[small.event.ID]
	if m == nil {
		t.Fatalf("event %s not logged; got %v", small.event.ID, byID)
	}
	if m["body"] != `{"order":42}` || m["target"] != "audit" || m["webhook"] != small.webhookID ||
		m["delivery_id"] != small.to(t, "audit").ID {
		t.Errorf("logged fields = %v", m)
	}
	if got := headers[small.event.ID].Get("Authorization"); got != "REDACTED" {
		t.Errorf("Authorization logged as %q", got)
	}
	if got := headers[small.event.ID].Get("X-Event-Kind"); got != "order.created" {
		t.Errorf("X-Event-Kind logged as %q", got)
	}
	if h.Get("Authorization") != "Bearer top-secret" {
		t.Error("logging changed the event's headers")
	}
	if m := byID[large.event.ID]; m == nil || m["body_size"] != int64(InlineBodyLimit+1) ||
		m["body"] != strings.Repeat("L", InlineBodyLimit+1) {
		t.Errorf("large event logged without its body read from the DB: size %v", m["body_size"])
	}
	env.noErrorLogs()
}
