package storage

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkSyncDeclared10k measures putting 10,000 declared webhooks (one
// entrypoint, one target each) in force on a main DB that already has them:
// what every start and reload of such a config pays before ingest routes.
func BenchmarkSyncDeclared10k(b *testing.B) {
	ctx := context.Background()
	db, err := OpenMainDB(ctx, b.TempDir(), SynchronousFull)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	declared := make([]*Webhook, 10000)
	for i := range declared {
		name := fmt.Sprintf("w%05d", i)
		id := DeclaredWebhookID(name)
		declared[i] = &Webhook{ID: id, Name: name, Source: SourceCaddyfile, Active: true,
			Entrypoints: []Entrypoint{{ID: DeclaredEntrypointID(id, name), WebhookID: id, Key: name, Active: true}},
			Targets:     []Target{{ID: DeclaredTargetID(id, "db"), WebhookID: id, Name: "db", Type: TargetDatabase, Active: true}},
		}
	}
	if _, err := db.SyncDeclared(ctx, declared); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := db.SyncDeclared(ctx, declared); err != nil {
			b.Fatal(err)
		}
		if _, err := db.LoadSnapshot(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
