package storage

import (
	"context"
	"strings"
	"testing"
	"time"
)

// OldestEventAt and OldestOpenDeliveryAt: none in an empty file, then the
// oldest event, and the oldest delivery still open (a delivered one older
// than it does not count), read through the partial index of open
// deliveries.
func TestOldestEventAndOpenDelivery(t *testing.T) {
	ctx := context.Background()
	db := openEventDB(t)
	if _, ok, err := db.OldestEventAt(ctx); err != nil || ok {
		t.Fatalf("OldestEventAt of an empty file: ok %v, err %v; want none", ok, err)
	}
	if _, ok, err := db.OldestOpenDeliveryAt(ctx); err != nil || ok {
		t.Fatalf("OldestOpenDeliveryAt of an empty file: ok %v, err %v; want none", ok, err)
	}
	now := time.Now().Round(0)
	times := []time.Time{now.Add(-time.Hour), now.Add(-3 * time.Hour), now.Add(-2 * time.Hour)}
	var events []*Event
	for _, at := range times {
		ev := &Event{Method: "POST", Path: "/in", Body: []byte(`{}`), ReceivedAt: at}
		if _, err := db.Ingest(ev, []Target{{ID: "a", Type: TargetHTTP, Active: true}}); err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
	}
	setStatus(t, db, events[1].ID, "a", DeliveryDelivered) // the oldest is done

	oldest, ok, err := db.OldestEventAt(ctx)
	if err != nil || !ok || !oldest.Equal(times[1]) {
		t.Errorf("OldestEventAt = %v, %v, %v; want %v", oldest, ok, err, times[1])
	}
	open, ok, err := db.OldestOpenDeliveryAt(ctx)
	if err != nil || !ok || !open.Equal(times[2]) {
		t.Errorf("OldestOpenDeliveryAt = %v, %v, %v; want %v (the oldest open one)", open, ok, err, times[2])
	}

	var plan strings.Builder
	rows, err := db.file.reader.QueryContext(ctx,
		"EXPLAIN QUERY PLAN SELECT min(created_at) FROM deliveries WHERE status IN ('pending', 'retrying')")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(detail + "\n")
	}
	if !strings.Contains(plan.String(), "deliveries_open") {
		t.Errorf("the oldest open delivery is not read through deliveries_open:\n%s", plan.String())
	}
}
