package admin_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/admin"
	"github.com/webhooker/caddy-webhooker/storage"
)

// The UI polls GET /webhooks?stats=true every few seconds. Over more
// webhooks than may be open at once, two such lists open no event DB: each
// one opened would stay open, as nothing is left to evict. The figures are
// those of the events stored.
func TestListWithStatsOpensNoEventDB(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	events, err := storage.NewWebhookDBManager(dir, storage.ManagerOptions{Synchronous: storage.SynchronousNormal, MaxOpen: 2})
	if err != nil {
		t.Fatal(err)
	}
	main, err := storage.OpenMainDB(ctx, dir, storage.SynchronousNormal)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := events.CloseAll(ctx); err != nil {
			t.Errorf("close event DBs: %v", err)
		}
		if err := main.Close(); err != nil {
			t.Errorf("close main DB: %v", err)
		}
	})
	h := admin.NewAdminHandler(&admin.Backend{Main: main, Events: events,
		ConfigChanged: func(context.Context) error { return nil }})

	const webhooks = 5
	want := map[string]int{} // name -> events stored
	for i := range webhooks {
		wh, err := main.CreateWebhook(ctx, storage.NewWebhook{Name: fmt.Sprintf("hook-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if err := events.Create(ctx, wh.ID); err != nil {
			t.Fatal(err)
		}
		err = events.With(ctx, wh.ID, func(db *storage.WebhookDB) error {
			for range i {
				ev := &storage.Event{Method: http.MethodPost, Path: "/hooks/k", ReceivedAt: time.Unix(int64(1000+i), 0)}
				if _, err := db.Ingest(ev, []storage.Target{{ID: "t-http", Type: storage.TargetHTTP}, {ID: "t-db", Type: storage.TargetDatabase}}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want[wh.Name] = i
	}
	if err := events.CloseAll(ctx); err != nil {
		t.Fatal(err)
	}

	for round := range 2 {
		var list struct {
			Webhooks []struct {
				Name       string              `json:"name"`
				Stats      *storage.EventStats `json:"stats"`
				StatsError string              `json:"stats_error"`
			} `json:"webhooks"`
		}
		expect(t, serve(t, h, req{method: "GET", path: "/webhooker/webhooks?stats=true"}), http.StatusOK, &list)
		if len(list.Webhooks) != webhooks {
			t.Fatalf("round %d: %d webhooks listed, want %d", round, len(list.Webhooks), webhooks)
		}
		for _, w := range list.Webhooks {
			n := want[w.Name]
			if w.Stats == nil || w.Stats.Events != n || w.Stats.Deliveries[storage.DeliveryPending] != n ||
				w.Stats.Deliveries[storage.DeliveryDelivered] != n || w.StatsError != "" {
				t.Errorf("round %d: %s: stats %+v (error %q), want %d events, %d pending, %d delivered",
					round, w.Name, w.Stats, w.StatsError, n, n, n)
			}
			if n > 0 && (w.Stats == nil || w.Stats.LastEventAt == nil || w.Stats.LastEventAt.Unix() != int64(1000+n)) {
				t.Errorf("round %d: %s: last event at %v, want %d", round, w.Name, w.Stats, 1000+n)
			}
		}
		if open := events.OpenCount(); open != 0 {
			t.Fatalf("round %d: %d event DBs open after listing with stats, want 0", round, open)
		}
	}
}
