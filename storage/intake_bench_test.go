package storage

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
)

// BenchmarkIntakeSpread ingests b.N 1 KiB events spread at random over
// 1,000 webhooks (more than the 256 event DBs kept open) from 64
// goroutines, then waits for the applier: ingest/s is what providers see,
// applied/s what the event DBs take.
func BenchmarkIntakeSpread(b *testing.B) {
	dir := b.TempDir()
	events, err := NewWebhookDBManager(dir, ManagerOptions{MaxOpen: 256})
	if err != nil {
		b.Fatal(err)
	}
	in, err := OpenIntake(context.Background(), dir, SynchronousFull, events, IntakeOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer events.CloseAll(context.Background())
	defer in.Close(context.Background())
	webhooks := make([]string, benchSpreadWebhooks)
	for i := range webhooks {
		webhooks[i] = uuid.NewString()
	}
	// Their files exist, as for webhooks that received before: what is
	// measured is the churn of opening and closing them, not their creation.
	for _, wh := range webhooks {
		if err := events.Create(context.Background(), wh); err != nil {
			b.Fatal(err)
		}
	}
	if err := events.CloseAll(context.Background()); err != nil {
		b.Fatal(err)
	}
	target := []Target{{ID: uuid.NewString(), Type: TargetDatabase}}
	body := make([]byte, 1024)
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				ev := &Event{Method: "POST", Body: body}
				if err := in.Ingest(context.Background(), webhooks[rand.IntN(len(webhooks))], ev, target); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	ingested := time.Since(start)
	if err := in.ApplyAll(); err != nil {
		b.Fatal(err)
	}
	applied := time.Since(start)
	b.ReportMetric(float64(b.N)/ingested.Seconds(), "ingest/s")
	b.ReportMetric(float64(b.N)/applied.Seconds(), "applied/s")
}

// benchSpreadWebhooks is how many webhooks BenchmarkIntakeSpread spreads
// over (WEBHOOKER_SPREAD overrides it).
var benchSpreadWebhooks = func() int {
	if n, err := strconv.Atoi(os.Getenv("WEBHOOKER_SPREAD")); err == nil && n > 0 {
		return n
	}
	return 1000
}()
