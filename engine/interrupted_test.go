package engine

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// interruptedAttempts reads the deliveries of a webhook marked in flight.
func (env *testEnv) interruptedAttempts(webhookID string) []storage.InterruptedAttempt {
	env.t.Helper()
	var marked []storage.InterruptedAttempt
	err := env.events.With(context.Background(), webhookID, func(db *storage.WebhookDB) error {
		var err error
		marked, err = db.InterruptedAttempts(context.Background())
		return err
	})
	if err != nil {
		env.t.Fatalf("InterruptedAttempts: %v", err)
	}
	return marked
}

// reopened is env on the same data directory through a second manager: what
// a new process opens after the previous one died.
func (env *testEnv) reopened() *testEnv {
	env.t.Helper()
	events, err := storage.NewWebhookDBManager(env.dir, storage.ManagerOptions{Synchronous: storage.SynchronousNormal})
	if err != nil {
		env.t.Fatalf("NewWebhookDBManager: %v", err)
	}
	env.t.Cleanup(func() {
		if err := events.CloseAll(context.Background()); err != nil {
			env.t.Errorf("CloseAll: %v", err)
		}
	})
	return &testEnv{t: env.t, dir: env.dir, events: events, main: env.main, logger: env.logger, logs: env.logs}
}

func TestHTTPAttemptIsMarkedInFlightUntilItIsRecorded(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	type seen struct {
		deliveryID string
		marked     []storage.InterruptedAttempt
	}
	during := make(chan seen, 1)
	var webhookID string
	tg := newTarget(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		// The target reads the event DB while the attempt is in flight.
		during <- seen{r.Header.Get("Webhook-Id"), env.interruptedAttempts(webhookID)}
		_, _ = io.WriteString(w, "ok")
	})
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, quick(3))))
	webhookID = snap.Webhooks()[0].ID
	e := env.start(snap, Options{})
	before := time.Now()
	in := env.send(e, snap, "shop-in", []byte(`{}`), nil)

	got := <-during
	// The webhook-id is the message id of the event and target, not the
	// delivery's id.
	if len(got.marked) != 1 || got.marked[0].DeliveryID != in.deliveries[0].ID ||
		got.deliveryID != MessageID(in.event.ID, in.deliveries[0].TargetID) {
		t.Fatalf("marks during the attempt of %s = %+v, want that delivery", got.deliveryID, got.marked)
	}
	if at := got.marked[0].StartedAt; at.Before(before) || at.After(time.Now()) {
		t.Errorf("mark at %s, not during the test", at)
	}
	env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	if left := env.interruptedAttempts(in.webhookID); len(left) != 0 {
		t.Errorf("marks after the attempt was recorded = %+v, want none", left)
	}
	env.noErrorLogs()
}

// A process dies while an attempt is in flight (here: the first engine is
// abandoned with its attempt hanging, and never records it). The next start
// on the same files counts that attempt, then retries or gives up as
// max_retries says.
func TestRestartCountsTheAttemptInFlightWhenTheProcessDied(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		maxRetries int
		failFirst  int // attempts answered 500 before the one that hangs
		status     storage.DeliveryStatus
		lastError  string
		requests   int // at the target, in all
	}{
		{"retries left: retried and delivered", 2, 0, storage.DeliveryDelivered, "", 2},
		{"third of max_retries 2: failed", 2, 2, storage.DeliveryFailed, "gave up after 3 attempts: " + InterruptedError, 3},
		{"max_retries 0: failed", 0, 0, storage.DeliveryFailed, "gave up after 1 attempt: " + InterruptedError, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hanging := make(chan struct{})
			tg := newTarget(t, func(n int, w http.ResponseWriter, r *http.Request) {
				switch {
				case n <= tc.failFirst:
					http.Error(w, "down", http.StatusInternalServerError)
				case n == tc.failFirst+1:
					close(hanging)
					<-r.Context().Done() // the process died: no answer is ever read
				default:
					_, _ = io.WriteString(w, "ok")
				}
			})
			env := newEnv(t)
			snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, quick(tc.maxRetries))))
			dead := env.start(snap, Options{})
			in := env.send(dead, snap, "shop-in", []byte(`{}`), nil)
			id := in.deliveries[0].ID
			<-hanging
			if marked := env.interruptedAttempts(in.webhookID); len(marked) != 1 || marked[0].DeliveryID != id {
				t.Fatalf("marks while the attempt hangs = %+v", marked)
			}

			next := env.reopened()
			next.start(snap, Options{})
			d := next.waitStatus(in.webhookID, id, tc.status)
			attempts := tc.failFirst + 1
			if tc.status == storage.DeliveryDelivered {
				attempts++
			}
			if d.Attempts != attempts || d.LastError != tc.lastError {
				t.Errorf("delivery = %+v, want %d attempts and last error %q", d, attempts, tc.lastError)
			}
			rs := next.results(in.webhookID, id)
			if len(rs) != attempts {
				t.Fatalf("results = %+v, want %d", rs, attempts)
			}
			if r := rs[tc.failFirst]; r.Attempt != tc.failFirst+1 || r.Error != InterruptedError || r.StatusCode != 0 {
				t.Errorf("the interrupted attempt was recorded as %+v", r)
			}
			if n := tg.count(); n != tc.requests {
				t.Errorf("the target got %d requests, want %d", n, tc.requests)
			}
			if left := next.interruptedAttempts(in.webhookID); len(left) != 0 {
				t.Errorf("marks left = %+v", left)
			}
			// The dead engine's attempt is cut short: it records nothing.
			aborted, cancel := context.WithCancel(context.Background())
			cancel()
			dead.Stop(aborted)
			if got := next.delivery(in.webhookID, id); got.Status != tc.status || got.Attempts != attempts {
				t.Errorf("after the first engine's stop: %+v", got)
			}
		})
	}
}

// A clean stop that cuts an attempt short clears its mark: the attempt is not
// counted at the next start (only a death is).
func TestStopClearsTheMarkOfAnAttemptItCutsShort(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	tg := newTarget(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			arrived <- struct{}{}
			<-r.Context().Done()
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	env := newEnv(t)
	opts := quick(0)
	opts.Timeout = storage.Duration(time.Minute)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, opts)))
	e := env.start(snap, Options{})
	in := env.send(e, snap, "shop-in", []byte(`{}`), nil)
	<-arrived
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	e.Stop(ctx)
	if marked := env.interruptedAttempts(in.webhookID); len(marked) != 0 {
		t.Fatalf("marks after a clean stop = %+v, want none", marked)
	}

	// With max_retries 0, a counted attempt would have failed the delivery.
	env.start(snap, Options{})
	d := env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	if rs := env.results(in.webhookID, d.ID); d.Attempts != 1 || len(rs) != 1 || rs[0].StatusCode != 200 {
		t.Errorf("after restart: %+v, results %+v; want one attempt, delivered", d, rs)
	}
	for _, entry := range env.logs.All() {
		if strings.Contains(entry.Message, "in flight when the gateway stopped") {
			t.Errorf("a clean stop's attempt was counted: %s", entry.Message)
		}
	}
}
