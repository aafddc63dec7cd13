package engine

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// orderedTarget is a target that records the order of what it receives
// (the "i" of each body), the most attempts it had in flight at once, and
// answers 500 while fail says so for the event and its attempt number.
type orderedReceiver struct {
	*target
	inFlight, most atomic.Int64
}

func newOrderedReceiver(t *testing.T, fail func(i, attempt int) bool) *orderedReceiver {
	o := &orderedReceiver{}
	attempts := make(map[int]int) // guarded by the target's mu, as requests
	o.target = newTarget(t, func(n int, w http.ResponseWriter, r *http.Request) {
		cur := o.inFlight.Add(1)
		defer o.inFlight.Add(-1)
		for m := o.most.Load(); cur > m && !o.most.CompareAndSwap(m, cur); m = o.most.Load() {
		}
		// A second attempt in flight at once would overlap this one.
		time.Sleep(time.Millisecond)
		o.mu.Lock()
		i := bodyIndex(t, o.requests[n-1].body)
		attempts[i]++
		a := attempts[i]
		o.mu.Unlock()
		if fail != nil && fail(i, a) {
			http.Error(w, "not now", http.StatusInternalServerError)
		}
	})
	return o
}

func bodyIndex(t *testing.T, body []byte) int {
	s := strings.TrimSuffix(strings.TrimPrefix(string(body), `{"i":`), "}")
	i, err := strconv.Atoi(s)
	if err != nil {
		t.Errorf("target: unexpected body %q", body)
	}
	return i
}

// arrivals lists the "i" of every request received, in order.
func (o *orderedReceiver) arrivals(t *testing.T) []int {
	var out []int
	for _, r := range o.all() {
		out = append(out, bodyIndex(t, r.body))
	}
	return out
}

// startLine starts an engine with one webhook, "line" (entrypoint
// "line-in"), whose one target is ordered with options o, and a receiver
// failing as fail says.
func startLine(t *testing.T, fail func(i, attempt int) bool, o storage.TargetOptions) (*orderedReceiver, *testEnv, *storage.Snapshot, *Engine) {
	t.Helper()
	rcv := newOrderedReceiver(t, fail)
	env := newEnv(t)
	o.Ordered = true
	snap := env.configure(webhook("line", httpTarget("in-order", rcv.URL, o)))
	return rcv, env, snap, env.start(snap, Options{Workers: 16})
}

// everyHour is o with retries an hour apart: a failed head waits.
func everyHour(o storage.TargetOptions) storage.TargetOptions {
	o.BackoffInitial, o.BackoffMax = storage.Duration(time.Hour), storage.Duration(time.Hour)
	return o
}

func wantArrivals(t *testing.T, got []int, want string) {
	t.Helper()
	if s := strings.Trim(fmt.Sprint(got), "[]"); s != want {
		t.Errorf("arrivals %q, want %q", s, want)
	}
}

func seq(from, to int) string {
	var parts []string
	for i := from; i < to; i++ {
		parts = append(parts, strconv.Itoa(i))
	}
	return strings.Join(parts, " ")
}

// An ordered target gets its deliveries one at a time in ingest order; the
// head failing its first three attempts holds every other back until it
// succeeds, then they follow, in order.
func TestOrderedTargetKeepsIngestOrderAcrossAFailingHead(t *testing.T) {
	t.Parallel()
	rcv, env, snap, e := startLine(t, func(i, attempt int) bool { return i == 0 && attempt <= 3 }, quick(10))
	const events = 40
	sent := sendNumbered(env, e, snap, "line-in", 0, events)
	waitAll(env, sent, storage.DeliveryDelivered)
	wantArrivals(t, rcv.arrivals(t), "0 0 0 "+seq(0, events))
	if m := rcv.most.Load(); m != 1 {
		t.Errorf("%d attempts in flight at once, want 1", m)
	}
	env.noErrorLogs()
}

// A head that gives up (failed after its retries) lets the line go on; the
// line, while it is held, says which delivery holds it and how many wait.
func TestOrderedLineGoesOnWhenTheHeadGivesUp(t *testing.T) {
	t.Parallel()
	o := quick(2)
	o.BackoffInitial, o.BackoffMax = storage.Duration(time.Second), storage.Duration(time.Second)
	rcv, env, snap, e := startLine(t, func(i, attempt int) bool { return i == 0 }, o)
	const events = 10
	sent := sendNumbered(env, e, snap, "line-in", 0, events)
	head := sent[0].deliveries[0]
	waitFor(t, "the line held by its failing head", func() bool {
		l, ok, err := e.Line(context.Background(), sent[0].webhookID, head.TargetID)
		if err != nil {
			t.Fatal(err)
		}
		return ok && l.Head.ID == head.ID && l.Head.Status == storage.DeliveryRetrying && l.Open == events
	}, waitTimeout)
	env.waitStatusWithin(sent[0].webhookID, head.ID, storage.DeliveryFailed, 30*time.Second)
	waitAll(env, sent[1:], storage.DeliveryDelivered)
	wantArrivals(t, rcv.arrivals(t), "0 0 0 "+seq(1, events))
	if _, ok, err := e.Line(context.Background(), sent[0].webhookID, head.TargetID); ok || err != nil {
		t.Errorf("line of a target with nothing open: ok=%v err=%v, want empty", ok, err)
	}
}

// The line is in the event DB: a new engine on the same files (a restart)
// starts from the same head, and the rest follow in order; nothing behind
// the head went out before the stop.
func TestOrderedLineSurvivesARestart(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	down.Store(true)
	rcv, env, snap, e := startLine(t, func(i, attempt int) bool { return down.Load() }, quick(100))
	const events = 20
	sent := sendNumbered(env, e, snap, "line-in", 0, events)
	waitFor(t, "the head attempted three times", func() bool { return rcv.count() >= 3 }, waitTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	e.Stop(ctx)
	cancel()
	before := rcv.arrivals(t)
	for _, i := range before {
		if i != 0 {
			t.Fatalf("event %d went out behind the failing head: %v", i, before)
		}
	}
	down.Store(false)
	e2 := env.start(snap, Options{Workers: 16})
	waitAll(env, sent, storage.DeliveryDelivered)
	wantArrivals(t, rcv.arrivals(t)[len(before):], seq(0, events))
	if m := rcv.most.Load(); m != 1 {
		t.Errorf("%d attempts in flight at once, want 1", m)
	}
	_ = e2
}

// Cancelling the head while it waits for its retry lets the next go at
// once, not when the cancelled one's time would have come.
func TestCancellingAWaitingHeadMovesTheLineOn(t *testing.T) {
	t.Parallel()
	rcv, env, snap, e := startLine(t, func(i, attempt int) bool { return i == 0 }, everyHour(quick(10)))
	sent := sendNumbered(env, e, snap, "line-in", 0, 5)
	head := sent[0].deliveries[0]
	env.waitStatusWithin(sent[0].webhookID, head.ID, storage.DeliveryRetrying, waitTimeout)
	if err := e.Cancel(context.Background(), sent[0].webhookID, head.ID); err != nil {
		t.Fatal(err)
	}
	waitAll(env, sent[1:], storage.DeliveryDelivered)
	wantArrivals(t, rcv.arrivals(t), "0 "+seq(1, 5))
}

// A target that is no longer ordered (a reload) sends what waited behind
// its head at once, as any target's due deliveries, without waiting for
// the head's retry time.
func TestUnorderingATargetReleasesItsLine(t *testing.T) {
	t.Parallel()
	rcv, env, snap, e := startLine(t, func(i, attempt int) bool { return i == 0 }, everyHour(quick(10)))
	sent := sendNumbered(env, e, snap, "line-in", 0, 5)
	env.waitStatusWithin(sent[0].webhookID, sent[0].deliveries[0].ID, storage.DeliveryRetrying, waitTimeout)
	if n := rcv.count(); n != 1 {
		t.Fatalf("%d requests while the head waits, want its 1", n)
	}
	// The same webhook and target, declared without ordered.
	e.SetSnapshot(env.configure(webhook("line", httpTarget("in-order", rcv.URL, everyHour(quick(10))))))
	waitAll(env, sent[1:], storage.DeliveryDelivered)
	if d := env.delivery(sent[0].webhookID, sent[0].deliveries[0].ID); d.Status != storage.DeliveryRetrying || d.Attempts != 1 {
		t.Errorf("the old head: %s after %d attempts, want still retrying after 1", d.Status, d.Attempts)
	}
}
