package storage

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"
)

func eventIDs(t *testing.T, db *WebhookDB) []string {
	t.Helper()
	rows, err := db.file.reader.Query("SELECT id FROM events ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func countRows(t *testing.T, db *WebhookDB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.file.reader.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func TestPruneDeletesOnlyOldEventsWhoseDeliveriesAreDone(t *testing.T) {
	ctx := context.Background()
	db := openEventDB(t)
	now := time.Now()
	old, recent := now.Add(-48*time.Hour), now.Add(-time.Hour)
	cutoff := now.Add(-24 * time.Hour)

	cases := []struct {
		name     string
		at       time.Time
		statuses []DeliveryStatus // of targets a and b
		kept     bool
	}{
		{"old, all delivered", old, []DeliveryStatus{DeliveryDelivered, DeliveryDelivered}, false},
		{"old, delivered and failed", old, []DeliveryStatus{DeliveryDelivered, DeliveryFailed}, false},
		{"old, one still pending", old, []DeliveryStatus{DeliveryDelivered, DeliveryPending}, true},
		{"old, one retrying", old, []DeliveryStatus{DeliveryFailed, DeliveryRetrying}, true},
		{"old, never attempted", old, []DeliveryStatus{DeliveryPending, DeliveryPending}, true},
		{"recent, all delivered", recent, []DeliveryStatus{DeliveryDelivered, DeliveryDelivered}, true},
		{"just before the cutoff", cutoff.Add(-time.Nanosecond), []DeliveryStatus{DeliveryFailed, DeliveryFailed}, false},
		{"at the cutoff", cutoff, []DeliveryStatus{DeliveryFailed, DeliveryFailed}, true},
	}
	var kept, gone []string
	var goneDeliveries []string
	for _, c := range cases {
		ev := storeEvents(t, db, []time.Time{c.at}, "a", "b")[0]
		for i, target := range []string{"a", "b"} {
			if c.statuses[i] != DeliveryPending {
				setStatus(t, db, ev.ID, target, c.statuses[i])
			}
		}
		if c.kept {
			kept = append(kept, ev.ID)
		} else {
			gone = append(gone, ev.ID)
			ds, _ := db.Deliveries(ctx, ev.ID)
			for _, d := range ds {
				goneDeliveries = append(goneDeliveries, d.ID)
			}
		}
	}
	// An old event with no delivery at all (no active target) has nothing
	// left to do.
	gone = append(gone, storeEvents(t, db, []time.Time{old})[0].ID)

	n, err := db.Prune(ctx, cutoff)
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	if n != len(gone) {
		t.Errorf("Prune deleted %d events, want %d", n, len(gone))
	}
	sort.Strings(kept)
	if got := eventIDs(t, db); strings.Join(got, ",") != strings.Join(kept, ",") {
		t.Errorf("events left = %v, want %v", got, kept)
	}
	for _, id := range goneDeliveries {
		if n := countRows(t, db, "SELECT count(*) FROM deliveries WHERE id = ?", id); n != 0 {
			t.Errorf("delivery %s of a pruned event is left", id)
		}
		if n := countRows(t, db, "SELECT count(*) FROM delivery_results WHERE delivery_id = ?", id); n != 0 {
			t.Errorf("%d attempts of delivery %s of a pruned event are left", n, id)
		}
	}
	if n := countRows(t, db, "SELECT count(*) FROM deliveries"); n != 2*len(kept) {
		t.Errorf("%d deliveries left, want %d", n, 2*len(kept))
	}
	// Nothing more to do.
	if n, err := db.Prune(ctx, cutoff); err != nil || n != 0 {
		t.Errorf("second Prune = %d, %v, want 0", n, err)
	}
}

func TestPruneDeletesInChunks(t *testing.T) {
	db := openEventDB(t)
	total := 2*pruneChunk + pruneChunk/2
	times := make([]time.Time, total)
	for i := range times {
		times[i] = time.Unix(1600000000, int64(i))
	}
	storeEvents(t, db, times)
	keep := storeEvents(t, db, []time.Time{time.Now()})[0]

	txBefore := db.commits.transactions.Load()
	n, err := db.Prune(context.Background(), time.Unix(1700000000, 0))
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	if n != total {
		t.Errorf("Prune deleted %d, want %d", n, total)
	}
	if writes := db.commits.transactions.Load() - txBefore; writes != 3 {
		t.Errorf("Prune of %d events took %d writes, want 3 of at most %d", total, writes, pruneChunk)
	}
	if got := eventIDs(t, db); len(got) != 1 || got[0] != keep.ID {
		t.Errorf("events left = %v, want only the recent one", got)
	}
}

func TestPruneStopsWhenTheContextEnds(t *testing.T) {
	db := openEventDB(t)
	storeEvents(t, db, []time.Time{time.Unix(1600000000, 0)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n, err := db.Prune(ctx, time.Now())
	wantErr(t, "Prune with an ended context", err, context.Canceled)
	if n != 0 || countEvents(t, db) != 1 {
		t.Errorf("Prune with an ended context deleted %d events", n)
	}
}
