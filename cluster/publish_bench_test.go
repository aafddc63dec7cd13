package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// BenchmarkPublish is an ingest's publish on one of two nodes (replicas 1),
// without a dedup id and with one: a new id reads the dedup record before
// publishing and writes it after, a repeat only reads it.
func BenchmarkPublish(b *testing.B) {
	a, _ := startTwo(b, 1<<30)
	ctx := context.Background()
	run := func(b *testing.B, key func(i int) string) {
		for i := 0; b.Loop(); i++ {
			ev := event(b, `{"n":1}`)
			if k := key(i); k != "" {
				ev.Dedup = storage.NewDedupKey(k, time.Hour)
			}
			if err := a.Publish(ctx, "wh-bench", ev, []string{"t1"}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("no dedup", func(b *testing.B) { run(b, func(int) string { return "" }) })
	b.Run("dedup, new ids", func(b *testing.B) {
		run(b, func(i int) string { return fmt.Sprintf("%s-%d", b.Name(), i) })
	})
	b.Run("dedup, repeats", func(b *testing.B) { run(b, func(int) string { return "the-same" }) })
}
