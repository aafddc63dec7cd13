package storage

import (
	"context"
	"testing"
)

// Deliveries to database targets are stored delivered, with their one
// attempt, in the ingest transaction; only the others come back pending.
func TestIngestStoresDatabaseDeliveriesDelivered(t *testing.T) {
	ctx := context.Background()
	_, _, db := openOne(t)
	before := db.commits.transactions.Load()
	pending, err := db.Ingest(&Event{Method: "POST", Path: "/p", Body: []byte("{}")}, targetsOf([]string{"http-target"}, []string{"archive", "audit-copy"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := db.commits.transactions.Load() - before; got != 1 {
		t.Errorf("ingest took %d transactions, want 1", got)
	}
	if len(pending) != 1 || pending[0].TargetID != "http-target" || pending[0].Status != DeliveryPending {
		t.Fatalf("pending deliveries = %+v, want the http target's only", pending)
	}
	all, err := db.Deliveries(ctx, pending[0].EventID)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 {
		t.Fatalf("%d deliveries stored, want 3", len(all))
	}
	for _, d := range all {
		results, err := db.DeliveryResults(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		switch d.TargetID {
		case "http-target":
			if d.Status != DeliveryPending || d.Attempts != 0 || len(results) != 0 {
				t.Errorf("http delivery = %+v with %d results, want pending, untried", d, len(results))
			}
		default:
			if d.Status != DeliveryDelivered || d.Attempts != 1 || len(results) != 1 || results[0].Attempt != 1 {
				t.Errorf("kept delivery to %s = %+v with %d results, want delivered after 1 recorded attempt", d.TargetID, d, len(results))
			}
		}
	}
	open, err := db.OpenDeliveries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 1 {
		t.Errorf("%d open deliveries, want 1: recovery must not see the kept ones", len(open))
	}
}
