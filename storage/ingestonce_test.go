package storage

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestIngestOnceStoresAnEventOnce: a second IngestOnce of the same event id
// writes nothing (no second set of deliveries, no second count) and says it
// was stored; a plain Ingest of it would fail.
func TestIngestOnceStoresAnEventOnce(t *testing.T) {
	ctx := context.Background()
	db := openEventDB(t)
	targets := []Target{{ID: uuid.NewString(), Type: TargetHTTP}, {ID: uuid.NewString(), Type: TargetDatabase}}
	ev := func() *Event {
		return &Event{ID: "01a2359e-e8b7-7ed6-8c47-03a2c0832d56", EntrypointKey: "k", Method: "POST", Path: "/hooks/k",
			Body: []byte(`{"a":1}`), ReceivedAt: time.Unix(100, 0)}
	}
	pending, stored, err := db.IngestOnce(ev(), targets)
	if err != nil || stored || len(pending) != 1 {
		t.Fatalf("first: %d pending, stored %v, %v", len(pending), stored, err)
	}
	pending, stored, err = db.IngestOnce(ev(), targets)
	if err != nil || !stored || pending != nil {
		t.Fatalf("again: %d pending, stored %v, %v", len(pending), stored, err)
	}
	ds, err := db.Deliveries(ctx, ev().ID)
	if err != nil || len(ds) != 2 {
		t.Fatalf("deliveries after two: %d (%v), want 2", len(ds), err)
	}
	st, err := db.Stats(ctx)
	if err != nil || st.Events != 1 {
		t.Fatalf("events counted: %+v (%v), want 1", st, err)
	}
	if _, err := db.Ingest(ev(), targets); err == nil {
		t.Fatal("a plain Ingest of a stored id succeeded: IngestOnce proves nothing")
	}
}
