package storage

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func idsOfPage(page []EventSummary) []string {
	ids := make([]string, len(page))
	for i, s := range page {
		ids[i] = s.ID
	}
	return ids
}

func TestListEventsFiltersByTargetTimeAndSearch(t *testing.T) {
	db := openEventDB(t)
	ctx := context.Background()
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	evs := storeEvents(t, db, []time.Time{base, base.Add(time.Minute), base.Add(2 * time.Minute)}, "a", "b")
	// Bodies are {"n":0}, {"n":1}, {"n":2}. Event 1 failed at a, event 2 at b.
	setStatus(t, db, evs[1].ID, "a", DeliveryFailed)
	setStatus(t, db, evs[2].ID, "b", DeliveryFailed)
	// An event whose body holds the SQL metacharacters searched for below.
	odd := storeEvents(t, db, []time.Time{base.Add(3 * time.Minute)}, "a")[0]
	if err := db.commits.submit(&commitRequest{write: func(w *writeTx) error {
		_, err := w.tx.ExecContext(w.ctx, `UPDATE events SET body = ? WHERE id = ?`, []byte(`50%_off' OR 1=1 --`), odd.ID)
		return err
	}}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		q    EventQuery
		want []string
	}{
		{"target", EventQuery{TargetID: "b"}, []string{evs[2].ID, evs[1].ID, evs[0].ID}},
		{"status with target", EventQuery{TargetID: "a", Status: DeliveryFailed}, []string{evs[1].ID}},
		{"status alone", EventQuery{Status: DeliveryFailed}, []string{evs[2].ID, evs[1].ID}},
		{"from inclusive", EventQuery{From: base.Add(time.Minute)}, []string{odd.ID, evs[2].ID, evs[1].ID}},
		{"to exclusive", EventQuery{To: base.Add(time.Minute)}, []string{evs[0].ID}},
		{"range", EventQuery{From: base.Add(time.Minute), To: base.Add(2*time.Minute + 1)}, []string{evs[2].ID, evs[1].ID}},
		{"event id", EventQuery{EventID: evs[1].ID}, []string{evs[1].ID}},
		{"body", EventQuery{BodyContains: `"n":2`}, []string{evs[2].ID}},
		{"percent is literal", EventQuery{BodyContains: `%`}, []string{odd.ID}},
		{"underscore is literal", EventQuery{BodyContains: `_`}, []string{odd.ID}},
		{"quote is literal", EventQuery{BodyContains: `' OR 1=1 --`}, []string{odd.ID}},
		{"no match", EventQuery{BodyContains: `"n":9`}, []string{}},
		{"body within the range", EventQuery{BodyContains: `"n"`, To: base.Add(time.Minute)}, []string{evs[0].ID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := idsOfPage(listEvents(t, db, tc.q))
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}

	for name, q := range map[string]EventQuery{
		"search too long": {BodyContains: strings.Repeat("x", MaxBodySearch+1)},
		"from at to":      {From: base, To: base},
		"from after to":   {From: base.Add(time.Second), To: base},
	} {
		if _, err := db.ListEvents(ctx, q); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// redeliver adds one new delivery of event to target and leaves it in status.
func redeliverAs(t *testing.T, db *WebhookDB, eventID, target string, status DeliveryStatus) {
	t.Helper()
	ds, err := db.Redeliver(context.Background(), eventID, []string{target})
	if err != nil {
		t.Fatal(err)
	}
	r := DeliveryResult{DeliveryID: ds[0].ID, Attempt: 1, StartedAt: time.Now(), StatusCode: 200}
	if err := db.RecordAttempt(context.Background(), r, DeliveryOutcome{Status: status}); err != nil {
		t.Fatal(err)
	}
}

func TestRedeliverySelectionTakesTheLatestDeliveryPerEventAndTarget(t *testing.T) {
	db := openEventDB(t)
	ctx := context.Background()
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	times := make([]time.Time, 6)
	for i := range times {
		times[i] = base.Add(time.Duration(i) * time.Minute)
	}
	evs := storeEvents(t, db, times, "a", "b")
	for _, ev := range evs {
		setStatus(t, db, ev.ID, "a", DeliveryFailed)
	}
	setStatus(t, db, evs[0].ID, "b", DeliveryFailed)
	// Event 1 failed at a, then was redelivered and delivered: not failed any more.
	redeliverAs(t, db, evs[1].ID, "a", DeliveryDelivered)
	// Event 2 was delivered at a after a failure, then redelivered and failed again: failed.
	redeliverAs(t, db, evs[2].ID, "a", DeliveryDelivered)
	redeliverAs(t, db, evs[2].ID, "a", DeliveryFailed)

	all := []string{"a", "b"}
	page := func(s RedeliverySelection, after string, limit int) []RedeliveryMatch {
		t.Helper()
		m, err := db.RedeliveryPage(ctx, s, after, limit)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	count := func(s RedeliverySelection) int {
		t.Helper()
		n, err := db.CountRedeliveries(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	failed := RedeliverySelection{Status: DeliveryFailed, TargetIDs: all}
	got := page(failed, "", 0)
	want := []RedeliveryMatch{
		{evs[0].ID, []string{"a", "b"}}, {evs[2].ID, []string{"a"}}, {evs[3].ID, []string{"a"}},
		{evs[4].ID, []string{"a"}}, {evs[5].ID, []string{"a"}},
	}
	if !slices.EqualFunc(got, want, func(x, y RedeliveryMatch) bool {
		return x.EventID == y.EventID && slices.Equal(x.TargetIDs, y.TargetIDs)
	}) {
		t.Fatalf("failed: got %v, want %v", got, want)
	}
	if n := count(failed); n != 5 {
		t.Errorf("count failed = %d, want 5", n)
	}
	// Pages by event id, two at a time, cover the same matches once.
	var paged []RedeliveryMatch
	for after := ""; ; {
		p := page(failed, after, 2)
		if len(p) == 0 {
			break
		}
		if len(p) > 2 {
			t.Fatalf("page of %d, limit 2", len(p))
		}
		paged = append(paged, p...)
		after = p[len(p)-1].EventID
	}
	if len(paged) != len(want) {
		t.Errorf("pages gave %d events, want %d", len(paged), len(want))
	}

	if n := count(RedeliverySelection{Status: DeliveryFailed, TargetIDs: []string{"b"}}); n != 1 {
		t.Errorf("failed at b = %d, want 1", n)
	}
	if n := count(RedeliverySelection{Status: DeliveryDelivered, TargetIDs: all}); n != 1 {
		t.Errorf("delivered = %d, want 1 (event 1)", n)
	}
	if n := count(RedeliverySelection{Status: DeliveryPending, TargetIDs: all}); n != 5 {
		t.Errorf("pending = %d, want 5 (b of events 1 to 5)", n)
	}
	ranged := RedeliverySelection{Status: DeliveryFailed, TargetIDs: all, From: times[2], To: times[4]}
	if got := page(ranged, "", 0); len(got) != 2 || got[0].EventID != evs[2].ID || got[1].EventID != evs[3].ID {
		t.Errorf("failed in [2, 4): %v", got)
	}

	for name, s := range map[string]RedeliverySelection{
		"no status":     {TargetIDs: all},
		"bad status":    {Status: "lost", TargetIDs: all},
		"no target":     {Status: DeliveryFailed},
		"empty range":   {Status: DeliveryFailed, TargetIDs: all, From: times[1], To: times[1]},
		"reverse range": {Status: DeliveryFailed, TargetIDs: all, From: times[2], To: times[1]},
	} {
		if _, err := db.CountRedeliveries(ctx, s); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: count: %v, want ErrInvalid", name, err)
		}
		if _, err := db.RedeliveryPage(ctx, s, "", 0); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: page: %v, want ErrInvalid", name, err)
		}
	}
}
