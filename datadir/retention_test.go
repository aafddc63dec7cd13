package datadir

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// fakeClock is a clock whose time moves only when the test says, and whose
// timers fire when it passes their time (each on its own goroutine, as
// time.AfterFunc's do).
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	fired  int // timers that fired
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Time
	f       func()
	stopped bool
	fired   bool
}

func newFakeClock(now time.Time) *fakeClock { return &fakeClock{now: now} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) stopper {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	c.fireDue()
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped && !t.fired
	t.stopped = true
	return was
}

// Advance moves the time on by d, firing the timers it passes.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.fireDue()
}

func (c *fakeClock) fireDue() {
	for _, t := range c.timers {
		if !t.stopped && !t.fired && !t.at.After(c.now) {
			t.fired = true
			c.fired++
			go t.f()
		}
	}
}

// armed lists when the timers neither stopped nor fired are set for.
func (c *fakeClock) armed() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Time
	for _, t := range c.timers {
		if !t.stopped && !t.fired {
			out = append(out, t.at)
		}
	}
	return out
}

func (c *fakeClock) firedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fired
}

// prunings reports each pruning of d's retention on the returned channel:
// the number of events it deleted.
func prunings(d *Dir) <-chan int {
	ch := make(chan int, 16)
	d.retention.afterPrune = func(_ string, n int) { ch <- n }
	return ch
}

func nextPruning(t *testing.T, ch <-chan int) int {
	t.Helper()
	select {
	case n := <-ch:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("no pruning ran: the retention timer did not fire")
		return 0
	}
}

func eventCount(t *testing.T, d *Dir, webhookID string) int {
	t.Helper()
	st, err := d.events.Stats(context.Background(), webhookID)
	if err != nil {
		t.Fatal(err)
	}
	return st.Events
}

// ingestAt stores an event of the webhook with entrypoint key, received at.
func ingestAt(t *testing.T, d *Dir, key string, at time.Time) {
	t.Helper()
	route, ok := d.Route(key)
	if !ok {
		t.Fatalf("no route for %s", key)
	}
	ev := &storage.Event{Method: "POST", Path: "/" + key, Body: []byte(`{}`), ReceivedAt: at}
	if err := d.Ingest(context.Background(), route, ev); err != nil {
		t.Fatal(err)
	}
}

func openWithClock(t *testing.T, c clock) *Dir {
	t.Helper()
	d, err := Open(t.TempDir(), Options{Synchronous: storage.SynchronousNormal, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	d.retention.clock = c
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := d.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return d
}

// A webhook that stopped receiving kept its old events for ever: pruning
// ran only when an event arrived. Now the start gives it a pruning, and
// each pruning sets the one timer for when its oldest remaining event
// comes of age, until none is left; then nothing is armed, until an event
// comes.
func TestRetentionPrunesAWebhookThatReceivesNothing(t *testing.T) {
	t0 := time.Now().Round(0) // wall clock only, as stored
	c := newFakeClock(t0)
	d := openWithClock(t, c)
	wh := keptWebhook("quiet", 1)
	if err := d.Declare(&Declaration{Webhooks: []*storage.Webhook{wh}}); err != nil {
		t.Fatal(err)
	}
	key := wh.Entrypoints[0].Key
	pruned := prunings(d)
	// Received before this start: one over a day old, two not yet.
	for _, age := range []time.Duration{30 * time.Hour, 6 * time.Hour, 0} {
		ingestAt(t, d, key, t0.Add(-age))
	}
	d.Start()
	if n := eventCount(t, d, wh.ID); n != 3 {
		t.Fatalf("%d events before any pruning, want 3", n)
	}

	// The start's pruning, staggered after the recovery scan.
	c.Advance(startupDelay)
	if n := nextPruning(t, pruned); n != 1 {
		t.Errorf("the start's pruning deleted %d events, want 1 (the one over a day old)", n)
	}
	if n := eventCount(t, d, wh.ID); n != 2 {
		t.Errorf("%d events after the start's pruning, want 2", n)
	}
	// Next due when the event received 6 h before t0 comes of age.
	if got, want := c.armed(), t0.Add(18*time.Hour+time.Nanosecond); len(got) != 1 || !got[0].Equal(want) {
		t.Fatalf("timers armed after the first pruning: %v, want one at %v", got, want)
	}

	// Nothing is received; the time comes.
	c.Advance(18*time.Hour + time.Nanosecond - startupDelay)
	if n := nextPruning(t, pruned); n != 1 {
		t.Errorf("the second pruning deleted %d events, want 1", n)
	}
	c.Advance(6 * time.Hour)
	if n := nextPruning(t, pruned); n != 1 {
		t.Errorf("the third pruning deleted %d events, want 1", n)
	}
	if n := eventCount(t, d, wh.ID); n != 0 {
		t.Errorf("%d events after every event came of age, want 0", n)
	}
	// Empty: nothing is due, no timer waits.
	if got := c.armed(); len(got) != 0 {
		t.Errorf("timers armed for a webhook without events: %v", got)
	}
	fired := c.firedCount()
	c.Advance(30 * 24 * time.Hour)
	if got := c.firedCount(); got != fired {
		t.Errorf("%d timers fired in 30 idle days, want none", got-fired)
	}

	// An event makes it due again, when that event comes of age.
	now := c.Now()
	ingestAt(t, d, key, now)
	if got, want := c.armed(), now.Add(24*time.Hour+time.Nanosecond); len(got) != 1 || !got[0].Equal(want) {
		t.Errorf("timers armed after an event: %v, want one at %v", got, want)
	}
}

// A reload that shortens retention_days prunes at once by the new value;
// one that sets it to 0 (keep for ever) leaves nothing armed.
func TestRetentionFollowsReloads(t *testing.T) {
	t0 := time.Now().Round(0) // wall clock only, as stored
	c := newFakeClock(t0)
	d := openWithClock(t, c)
	wh := keptWebhook("shortened", 3)
	if err := d.Declare(&Declaration{Webhooks: []*storage.Webhook{wh}}); err != nil {
		t.Fatal(err)
	}
	key := wh.Entrypoints[0].Key
	pruned := prunings(d)
	ingestAt(t, d, key, t0.Add(-48*time.Hour))
	d.Start()
	c.Advance(startupDelay)
	if n := nextPruning(t, pruned); n != 0 {
		t.Fatalf("the start's pruning deleted %d events of 2 days with a retention of 3, want 0", n)
	}

	oneDay := keptWebhook("shortened", 1)
	if err := d.Declare(&Declaration{Webhooks: []*storage.Webhook{oneDay}}); err != nil {
		t.Fatal(err)
	}
	if n := nextPruning(t, pruned); n != 1 {
		t.Errorf("the pruning after retention_days went from 3 to 1 deleted %d events, want 1", n)
	}
	if n := eventCount(t, d, wh.ID); n != 0 {
		t.Errorf("%d events left, want 0", n)
	}

	ingestAt(t, d, key, c.Now())
	if len(c.armed()) != 1 {
		t.Fatalf("no timer armed for the new event: %v", c.armed())
	}
	forever := keptWebhook("shortened", 0)
	if err := d.Declare(&Declaration{Webhooks: []*storage.Webhook{forever}}); err != nil {
		t.Fatal(err)
	}
	if got := c.armed(); len(got) != 0 {
		t.Errorf("timers armed for a webhook that keeps its events for ever: %v", got)
	}
}
