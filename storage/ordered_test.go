package storage

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A target's line is its open deliveries in the order written: the head is
// the first of them whatever its state (retrying, put off to a later time,
// or pending), and moves on only when the head is delivered or fails; other
// targets' deliveries are never in it.
func TestLineHeadIsTheFirstOpenDeliveryOfItsTarget(t *testing.T) {
	now := time.Now()
	f := newDueFixture(t, now)
	ctx := context.Background()
	head := func(target string) string {
		t.Helper()
		d, ok, err := f.db.LineHead(ctx, target)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return ""
		}
		return strings.Join(f.names([]Delivery{d}), "")
	}
	// t1 was written late, p1, held-a, held-b, p3, held-future.
	if got := head("t1"); got != "late" {
		t.Fatalf("head of t1 = %q, want late (first written, retrying an hour from now)", got)
	}
	l, ok, err := f.db.Line(ctx, "t1")
	if err != nil || !ok || l.Open != 6 || l.Head.ID != f.ids["late"] {
		t.Fatalf("Line(t1) = %+v, %v, %v; want head late and 6 open", l, ok, err)
	}
	outcome := func(name string, out DeliveryOutcome) {
		t.Helper()
		_, _, err := f.db.RecordAttemptOutcome(ctx, DeliveryResult{DeliveryID: f.ids[name], Attempt: 1, StartedAt: now}, out)
		if err != nil {
			t.Fatal(err)
		}
	}
	// A failed attempt that retries keeps it the head.
	outcome("late", DeliveryOutcome{Status: DeliveryRetrying, NextAttemptAt: now.Add(time.Minute), LastError: "503"})
	if got := head("t1"); got != "late" {
		t.Errorf("after a retrying outcome the head = %q, want late still", got)
	}
	outcome("late", DeliveryOutcome{Status: DeliveryDelivered})
	if got := head("t1"); got != "p1" {
		t.Errorf("after the head was delivered the head = %q, want p1", got)
	}
	outcome("p1", DeliveryOutcome{Status: DeliveryFailed, LastError: "gave up"})
	if err := f.db.CancelDelivery(ctx, f.ids["held-a"]); err != nil {
		t.Fatal(err)
	}
	if got := head("t1"); got != "held-b" {
		t.Errorf("after a failed head and a cancelled one the head = %q, want held-b", got)
	}
	if got := head("t2"); got != "early" {
		t.Errorf("head of t2 = %q, want early", got)
	}
	if got := head("t3"); got != "" {
		t.Errorf("head of a target with no delivery = %q, want none", got)
	}
	if _, ok, err := f.db.Line(ctx, "t3"); ok || err != nil {
		t.Errorf("Line of a target with no delivery = %v, %v; want none", ok, err)
	}
	// A redelivery joins the end of the line.
	ev, err := f.db.Delivery(ctx, f.ids["late"])
	if err != nil {
		t.Fatal(err)
	}
	re, err := f.db.Redeliver(ctx, ev.EventID, []string{"t1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"held-b", "p3", "held-future"} {
		outcome(name, DeliveryOutcome{Status: DeliveryDelivered})
	}
	if d, ok, err := f.db.LineHead(ctx, "t1"); err != nil || !ok || d.ID != re[0].ID {
		t.Errorf("head once the rest is done = %+v, %v, %v; want the redelivery %s", d, ok, err, re[0].ID)
	}
}

// The walk of due deliveries leaves out the targets it is told to skip, in
// every group, and still reads every other due delivery, in its order.
func TestDueDeliveriesSkipTargets(t *testing.T) {
	now := time.Now()
	f := newDueFixture(t, now)
	for skip, want := range map[string]string{
		"t1":    "p2 early held-c",
		"t2":    "p1 p3 held-a held-b",
		"t1 t2": "",
		"t9":    "p1 p2 p3 early held-a held-b held-c",
	} {
		for _, limit := range []int{1, 256} {
			var (
				c   DueCursor
				all []string
			)
			for n := 0; !c.Done(); n++ {
				page, err := f.db.DueDeliveries(context.Background(), now, &c, limit, strings.Fields(skip)...)
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, f.names(page)...)
				if n > 20 {
					t.Fatalf("skip %s: the walk does not end", skip)
				}
			}
			if got := strings.Join(all, " "); got != want {
				t.Errorf("skip %s, limit %d: walked %q, want %q", skip, limit, got, want)
			}
		}
	}
}

// The planner reads a target's line through deliveries_open_target, not
// through a scan of every delivery: the cost of finding the head must not
// grow with the other targets' backlogs.
func TestLineHeadUsesItsIndex(t *testing.T) {
	f := newDueFixture(t, time.Now())
	rows, err := f.db.file.reader.Query("EXPLAIN QUERY PLAN SELECT "+deliveryColumns+
		" FROM deliveries WHERE "+openOfTarget+" ORDER BY rowid LIMIT 1", "t1")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	got := strings.Join(plan, "; ")
	if !strings.Contains(got, "deliveries_open_target") || strings.Contains(got, "TEMP B-TREE") {
		t.Errorf("plan of LineHead = %q, want a search of deliveries_open_target in rowid order", got)
	}
}
