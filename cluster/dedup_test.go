package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// dedupRig publishes events with dedup ids on a node whose dedup clock the
// test moves.
type dedupRig struct {
	t     *testing.T
	c     *Cluster
	clock time.Time
}

func newDedupRig(t *testing.T) *dedupRig {
	a, _ := startTwo(t, 1<<20)
	r := &dedupRig{t: t, c: a, clock: time.Now()}
	a.now = func() time.Time { return r.clock } // only Publish reads it, on the test's goroutine
	return r
}

func (r *dedupRig) publish(webhookID, key string, window time.Duration) *storage.Event {
	r.t.Helper()
	ev := event(r.t, `{"dedup":true}`)
	ev.Dedup = storage.NewDedupKey(key, window)
	if err := r.c.Publish(context.Background(), webhookID, ev, []string{"t1"}); err != nil {
		r.t.Fatal(err)
	}
	return ev
}

func (r *dedupRig) expect(what string, ev *storage.Event, repeat bool, id string) {
	r.t.Helper()
	if ev.Dedup.Repeat != repeat || ev.ID != id {
		r.t.Fatalf("%s: repeat %v, id %s; want repeat %v, id %s", what, ev.Dedup.Repeat, ev.ID, repeat, id)
	}
}

// A webhook's dedup window shorter than the stream's memory of message ids
// (24 h) holds in cluster mode as on a single node: a repeat within it is
// answered with the first event's id, and past it the dedup id makes a new
// event, though the stream still remembers the id.
func TestDedupWindowShorterThanTheStreams(t *testing.T) {
	r := newDedupRig(t)
	publish, expect := r.publish, r.expect
	// An hour, shorter than the stream's 24 h.
	first := publish("wh-hour", "delivery-1", time.Hour)
	expect("first", first, false, first.ID)
	r.clock = r.clock.Add(30 * time.Minute)
	expect("30 min later", publish("wh-hour", "delivery-1", time.Hour), true, first.ID)
	r.clock = r.clock.Add(time.Hour)
	second := publish("wh-hour", "delivery-1", time.Hour)
	expect("90 min later, the window passed though the stream remembers the id", second, false, second.ID)
	if second.ID == first.ID {
		t.Fatal("the new event has the first's id")
	}
	r.clock = r.clock.Add(30 * time.Minute)
	expect("30 min after the second", publish("wh-hour", "delivery-1", time.Hour), true, second.ID)
}

// A webhook's dedup window longer than the stream's memory of message ids
// holds as well: a repeat after the stream forgot the id (a second here),
// within the window, is answered from the dedup record.
func TestDedupWindowLongerThanTheStreams(t *testing.T) {
	r := newDedupRig(t)
	a, ctx, publish, expect := r.c, context.Background(), r.publish, r.expect
	st := a.stream.Load()
	info, err := (*st).Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	cfg.Duplicates = time.Second
	if _, err := a.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	long := publish("wh-days", "delivery-2", 48*time.Hour)
	expect("first of two days", long, false, long.ID)
	time.Sleep(2500 * time.Millisecond) // the stream forgets its message id
	r.clock = r.clock.Add(30 * time.Hour)
	expect("30 h later, the stream having forgotten", publish("wh-days", "delivery-2", 48*time.Hour), true, long.ID)
	r.clock = r.clock.Add(20 * time.Hour)
	after := publish("wh-days", "delivery-2", 48*time.Hour)
	expect("50 h later", after, false, after.ID)

	// Its record is kept long enough: in the bucket of windows up to 3 days.
	kv, err := a.js.KeyValue(ctx, "webhooker_dedup_3d")
	if err != nil {
		t.Fatal(err)
	}
	status, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if status.TTL() < 48*time.Hour || status.Values() == 0 {
		t.Errorf("bucket of the two-day window: TTL %s, %d values", status.TTL(), status.Values())
	}
}

// Windows go to the bucket that keeps them long enough, and no longer
// than needed.
func TestDedupBucketOfAWindow(t *testing.T) {
	for _, c := range []struct {
		window time.Duration
		want   string
	}{
		{time.Second, "webhooker_dedup"},
		{24 * time.Hour, "webhooker_dedup"},
		{24*time.Hour + time.Second, "webhooker_dedup_3d"},
		{7 * 24 * time.Hour, "webhooker_dedup_7d"},
		{30 * 24 * time.Hour, "webhooker_dedup_30d"},
		{31 * 24 * time.Hour, "webhooker_dedup_30d"},
	} {
		b := dedupBuckets[dedupBucketOf(c.window)]
		if b.name != c.want {
			t.Errorf("window %s: bucket %s, want %s", c.window, b.name, c.want)
		}
		if c.window <= 30*24*time.Hour && b.ttl < c.window+dedupMargin {
			t.Errorf("window %s: bucket %s keeps a record %s", c.window, b.name, b.ttl)
		}
	}
	if msgIDOf("w", "k", 0) != "w/k" || msgIDOf("w", "k", 2) != "w#2/k" {
		t.Errorf("message ids: %s, %s", msgIDOf("w", "k", 0), msgIDOf("w", "k", 2))
	}
}
