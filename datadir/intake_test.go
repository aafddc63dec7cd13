package datadir

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// TestBusyWebhookIngestsDirect: events of a webhook with several ingests
// in flight go straight into its open event DB (one write each), and the
// others through the intake; every one is stored either way.
func TestBusyWebhookIngestsDirect(t *testing.T) {
	d := openWithClock(t, newFakeClock(time.Now()))
	busy, quiet := keptWebhook("busy", 0), keptWebhook("quiet", 0)
	if err := d.Declare(&Declaration{Webhooks: []*storage.Webhook{busy, quiet}}); err != nil {
		t.Fatal(err)
	}
	d.Start()
	ingest := func(wh *storage.Webhook) {
		route, ok := d.Route(wh.Entrypoints[0].Key)
		if !ok {
			t.Fatalf("no route for %s", wh.Name)
		}
		if err := d.Ingest(context.Background(), route, &storage.Event{Method: "POST", Body: []byte(`{}`)}); err != nil {
			t.Error(err)
		}
	}
	// One at a time: through the intake (the first opens the event DB).
	for range 10 {
		ingest(quiet)
	}
	ingest(busy)
	if n := eventCount(t, d, busy.ID); n != 1 { // applies it, and opens the file
		t.Fatalf("%d events of busy, want 1", n)
	}
	if err := d.ApplyIntake(); err != nil {
		t.Fatal(err)
	}
	if f := d.IntakeFigures(); f.Applied != 11 {
		t.Fatalf("%d events went through the intake, want all 11 sent one at a time", f.Applied)
	}
	// 32 at a time into busy, whose event DB is open now: most go direct.
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				ingest(busy)
			}
		}()
	}
	wg.Wait()
	if err := d.ApplyIntake(); err != nil {
		t.Fatal(err)
	}
	if n := eventCount(t, d, busy.ID); n != 1+32*20 {
		t.Errorf("%d events of busy stored, want %d", n, 1+32*20)
	}
	viaIntake := d.IntakeFigures().Applied - 11
	t.Logf("of %d concurrent ingests, %d went through the intake", 32*20, viaIntake)
	if viaIntake >= 32*20/2 {
		t.Errorf("%d of %d concurrent ingests into one open event DB went through the intake, want most direct", viaIntake, 32*20)
	}
	if n := eventCount(t, d, quiet.ID); n != 10 {
		t.Errorf("%d events of quiet, want 10", n)
	}
}

// TestBusyWebhookDedupsThroughTheIntake: a webhook busy enough to ingest
// direct still claims dedup keys in the intake: 32 ingests at once of one
// delivery store one event.
func TestBusyWebhookDedupsThroughTheIntake(t *testing.T) {
	d := openWithClock(t, newFakeClock(time.Now()))
	wh := keptWebhook("dedup", 0)
	if err := d.Declare(&Declaration{Webhooks: []*storage.Webhook{wh}}); err != nil {
		t.Fatal(err)
	}
	d.Start()
	route, _ := d.Route(wh.Entrypoints[0].Key)
	if err := d.Ingest(context.Background(), route, &storage.Event{Method: "POST", Body: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	eventCount(t, d, wh.ID) // opens the event DB: the ingests below are busy and may go direct
	ids := make(chan string, 32)
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev := &storage.Event{Method: "POST", Body: []byte(`{"id":"evt_1"}`), Dedup: storage.NewDedupKey("evt_1", time.Hour)}
			if err := d.Ingest(context.Background(), route, ev); err != nil {
				t.Error(err)
			}
			ids <- ev.ID
		}()
	}
	wg.Wait()
	close(ids)
	first := ""
	for id := range ids {
		if first == "" {
			first = id
		}
		if id != first {
			t.Errorf("the same delivery got events %s and %s", first, id)
		}
	}
	if n := eventCount(t, d, wh.ID); n != 2 {
		t.Errorf("%d events stored, want 2 (one plain, one of the 32 repeats)", n)
	}
}

// TestIntakeMemoryOption: the Dir's IntakeMemory is the intake's bound,
// and zero is the default.
func TestIntakeMemoryOption(t *testing.T) {
	for _, c := range []struct{ set, want int64 }{{0, storage.DefaultIntakeMemory}, {256 << 20, 256 << 20}} {
		d, err := Open(t.TempDir(), Options{IntakeMemory: c.set})
		if err != nil {
			t.Fatal(err)
		}
		if got := d.IntakeFigures().Memory; got != c.want {
			t.Errorf("IntakeMemory %d: the intake's bound is %d, want %d", c.set, got, c.want)
		}
		if err := d.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestIntakeSizeOption: the Dir's IntakeSize is the intake's bound on
// disk, and zero is the default.
func TestIntakeSizeOption(t *testing.T) {
	for _, c := range []struct{ set, want int64 }{{0, storage.DefaultIntakeSize}, {8 << 20, 8 << 20}} {
		d, err := Open(t.TempDir(), Options{IntakeSize: c.set})
		if err != nil {
			t.Fatal(err)
		}
		if got := d.IntakeFigures().Size; got != c.want {
			t.Errorf("IntakeSize %d: the intake's bound is %d, want %d", c.set, got, c.want)
		}
		if err := d.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
