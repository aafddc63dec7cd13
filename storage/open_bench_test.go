package storage

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

// BenchmarkOpenEventDB is the cost of opening an event DB and closing it
// again, as the applier does with a cold file under load spread over more
// webhooks than max_open_event_dbs: a file made at this open (a webhook's
// first event) and one that exists.
func BenchmarkOpenEventDB(b *testing.B) {
	ctx := context.Background()
	b.Run("fresh", func(b *testing.B) {
		dir := b.TempDir()
		for i := 0; b.Loop(); i++ {
			db, err := openWebhookDB(ctx, "w", filepath.Join(dir, fmt.Sprintf("events-%d.db", i)), SynchronousFull)
			if err != nil {
				b.Fatal(err)
			}
			if err := db.close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("existing", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "events.db")
		db, err := openWebhookDB(ctx, "w", path, SynchronousFull)
		if err != nil {
			b.Fatal(err)
		}
		if err := db.close(); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			db, err := openWebhookDB(ctx, "w", path, SynchronousFull)
			if err != nil {
				b.Fatal(err)
			}
			if err := db.close(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
