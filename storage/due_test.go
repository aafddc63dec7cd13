package storage

import (
	"context"
	"strings"
	"testing"
	"time"
)

// dueFixture is an event DB with pending and retrying deliveries at known
// times: ids by name.
type dueFixture struct {
	db  *WebhookDB
	ids map[string]string
}

func newDueFixture(t *testing.T, now time.Time) *dueFixture {
	t.Helper()
	m := newManager(t, ManagerOptions{Synchronous: SynchronousNormal})
	id := newID(t)
	f := &dueFixture{ids: make(map[string]string)}
	withDB(t, m, id, func(db *WebhookDB) { f.db = db })
	ctx := context.Background()
	// Written in this order; the retrying ones are put off to their times.
	for _, w := range []struct {
		name, target string
		at           time.Time // zero: left pending
	}{
		{"late", "t1", now.Add(time.Hour)},
		{"p1", "t1", time.Time{}},
		{"held-a", "t1", now.Add(-time.Second)},
		{"early", "t2", now.Add(-time.Minute)},
		{"p2", "t2", time.Time{}},
		{"held-b", "t1", now.Add(-time.Second)},
		{"held-c", "t2", now.Add(-time.Second)},
		{"later", "t2", now.Add(2 * time.Hour)},
		{"p3", "t1", time.Time{}},
		{"held-future", "t1", now.Add(time.Minute)},
	} {
		ds, err := f.db.Ingest(&Event{Method: "POST", Path: "/" + w.name}, pendingTo(w.target))
		if err != nil {
			t.Fatal(err)
		}
		f.ids[w.name] = ds[0].ID
		if !w.at.IsZero() {
			if err := f.db.Reschedule(ctx, ds[0].ID, w.at); err != nil {
				t.Fatal(err)
			}
		}
	}
	return f
}

func (f *dueFixture) names(ds []Delivery) []string {
	var out []string
	for _, d := range ds {
		for name, id := range f.ids {
			if id == d.ID {
				out = append(out, name)
			}
		}
	}
	return out
}

// A walk of the due deliveries reads pending ones in the order they were
// written, then the retrying ones whose time has come, earliest first (ties
// in the order written), in pages, each once, and none that is not due.
func TestDueDeliveriesWalksInPagesInOrder(t *testing.T) {
	now := time.Now()
	f := newDueFixture(t, now)
	want := "p1 p2 p3 early held-a held-b held-c"
	for _, limit := range []int{1, 2, 3, 256} {
		var (
			c     DueCursor
			all   []string
			pages int
		)
		for !c.Done() {
			page, err := f.db.DueDeliveries(context.Background(), now, &c, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > limit {
				t.Fatalf("page of %d with limit %d", len(page), limit)
			}
			all = append(all, f.names(page)...)
			if pages++; pages > 20 {
				t.Fatalf("limit %d: the walk does not end: %v", limit, all)
			}
		}
		if got := strings.Join(all, " "); got != want {
			t.Errorf("limit %d: walked %q, want %q", limit, got, want)
		}
	}
}

func TestNextRetryAtAndCountRetryingAfter(t *testing.T) {
	now := time.Now()
	f := newDueFixture(t, now)
	ctx := context.Background()
	at, ok, err := f.db.NextRetryAt(ctx, now)
	if err != nil || !ok || !at.Equal(now.Add(time.Minute)) {
		t.Errorf("NextRetryAt(now) = %s, %v, %v; want %s", at, ok, err, now.Add(time.Minute))
	}
	at, ok, err = f.db.NextRetryAt(ctx, time.Time{})
	if err != nil || !ok || !at.Equal(now.Add(-time.Minute)) {
		t.Errorf("NextRetryAt(any) = %s, %v, %v; want %s", at, ok, err, now.Add(-time.Minute))
	}
	if _, ok, err := f.db.NextRetryAt(ctx, now.Add(3*time.Hour)); ok || err != nil {
		t.Errorf("NextRetryAt after the last = %v, %v; want none", ok, err)
	}
	for target, want := range map[string]int{"": 3, "t1": 2, "t2": 1} {
		if n, err := f.db.CountRetryingAfter(ctx, now, target); n != want || err != nil {
			t.Errorf("CountRetryingAfter(now, %q) = %d, %v; want %d", target, n, err, want)
		}
	}
}

// The deliveries a breaker held until one instant become due now, those of
// its target only; nothing else moves.
func TestReleaseHeldMakesThoseHeldDueNow(t *testing.T) {
	now := time.Now()
	f := newDueFixture(t, now)
	ctx := context.Background()
	n, err := f.db.ReleaseHeld(ctx, "t1", now.Add(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("ReleaseHeld = %d, %v; want 1", n, err)
	}
	d, err := f.db.Delivery(ctx, f.ids["held-future"])
	if err != nil || d.Status != DeliveryRetrying || d.NextAttemptAt.After(time.Now()) {
		t.Errorf("released delivery = %+v, %v; want retrying and due", d, err)
	}
	for _, name := range []string{"late", "later"} {
		if d, _ := f.db.Delivery(ctx, f.ids[name]); !d.NextAttemptAt.After(now) {
			t.Errorf("%s moved: %+v", name, d)
		}
	}
	if n, err := f.db.ReleaseHeld(ctx, "t2", now.Add(time.Hour)); n != 0 || err != nil {
		t.Errorf("ReleaseHeld of another target's time = %d, %v; want 0", n, err)
	}
}

// Every read of a walk and the next due time are ranges of deliveries_open
// in its order: no scan of the table, no sort of what they read.
func TestDueReadsUseTheOpenIndex(t *testing.T) {
	f := newDueFixture(t, time.Now())
	for _, q := range []string{
		"SELECT " + deliveryColumns + `, rowid FROM deliveries
			WHERE status IN ('pending', 'retrying') AND status = 'pending' AND next_attempt_at IS NULL AND rowid > 0 ORDER BY rowid LIMIT 9`,
		"SELECT " + deliveryColumns + `, rowid FROM deliveries
			WHERE ` + retryingOpen + ` AND next_attempt_at >= 1 AND next_attempt_at <= 2
			AND (next_attempt_at, rowid) > (1, 0) ORDER BY next_attempt_at, rowid LIMIT 9`,
		`SELECT min(next_attempt_at) FROM deliveries WHERE ` + retryingOpen + ` AND next_attempt_at > 1`,
	} {
		rows, err := f.db.file.reader.Query("EXPLAIN QUERY PLAN " + q)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		p := strings.Join(plan, "; ")
		if !strings.Contains(p, "deliveries_open") || strings.Contains(p, "TEMP B-TREE") {
			t.Errorf("plan of %s:\n%s", q, p)
		}
	}
}
