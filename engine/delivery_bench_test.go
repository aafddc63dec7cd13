package engine

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/webhooker/caddy-webhooker/storage"
)

// BenchmarkHTTPDeliveries measures http deliveries per second from the
// engine's queue to a local target that answers 200 at once: the cost of an
// attempt's own writes (the in-flight mark and the record of the attempt),
// not of the network. Run with a fixed -benchtime (e.g. 2000x): each
// iteration is one delivery.
func BenchmarkHTTPDeliveries(b *testing.B) {
	for _, mode := range []storage.Synchronous{storage.SynchronousFull, storage.SynchronousNormal} {
		for _, workers := range []int{1, 16} {
			b.Run(fmt.Sprintf("sync=%s/workers=%d", mode, workers), func(b *testing.B) {
				benchmarkDeliveries(b, mode, workers, workers, false)
			})
		}
		// The defaults: DefaultWorkers, and the default cap per target.
		b.Run(fmt.Sprintf("sync=%s/defaults", mode), func(b *testing.B) {
			benchmarkDeliveries(b, mode, 0, 0, false)
		})
		// An ordered target: one at a time, each after the outcome of the
		// one before it is committed and its line's head read.
		b.Run(fmt.Sprintf("sync=%s/ordered", mode), func(b *testing.B) {
			benchmarkDeliveries(b, mode, 0, 0, true)
		})
	}
}

// benchmarkDeliveries runs b.N deliveries with the engine's Workers and
// MaxPerTarget options (0: their defaults), to an ordered target or not.
func benchmarkDeliveries(b *testing.B, mode storage.Synchronous, workers, perTarget int, ordered bool) {
	ctx := context.Background()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer target.Close()
	dir := b.TempDir()
	events, err := storage.NewWebhookDBManager(dir, storage.ManagerOptions{Synchronous: mode})
	if err != nil {
		b.Fatal(err)
	}
	defer events.CloseAll(ctx)
	main, err := storage.OpenMainDB(ctx, dir, mode)
	if err != nil {
		b.Fatal(err)
	}
	defer main.Close()
	o := quick(3)
	o.Ordered = ordered
	if _, err := main.SyncDeclared(ctx, []*storage.Webhook{webhook("bench", httpTarget("sink", target.URL, o))}); err != nil {
		b.Fatal(err)
	}
	snap, err := main.LoadSnapshot(ctx)
	if err != nil {
		b.Fatal(err)
	}
	route, _ := snap.Route("bench-in")

	// The events are stored before the clock starts, concurrently so that
	// group commit makes it quick.
	tasks := make([]Task, b.N)
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < b.N; i = int(next.Add(1)) - 1 {
				ev := &storage.Event{EntrypointID: route.Entrypoint.ID, EntrypointKey: "bench-in", Method: http.MethodPost,
					Path: "/hooks/bench-in", Headers: http.Header{"Content-Type": {"application/json"}},
					Body: []byte(`{"n":1}`), ContentType: "application/json"}
				err := events.With(ctx, route.Webhook.ID, func(db *storage.WebhookDB) error {
					ds, err := db.Ingest(ev, route.Targets[:1])
					if err == nil {
						tasks[i] = TasksForEvent(route.Webhook.ID, ev, ds, route.Targets)[0]
					}
					return err
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()

	var delivered atomic.Int64
	done := make(chan struct{})
	e := New(events, Options{Workers: workers, MaxPerTarget: perTarget, QueueSize: b.N + 1,
		Recorded: func(_ storage.TargetType, status storage.DeliveryStatus) {
			if status != storage.DeliveryDelivered {
				b.Errorf("a delivery ended %s", status)
			}
			if delivered.Add(1) == int64(b.N) {
				close(done)
			}
		}})
	e.SetSnapshot(snap)
	e.Notify(tasks)
	b.ResetTimer()
	e.Start()
	<-done
	b.StopTimer()
	e.Stop(ctx)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
}
