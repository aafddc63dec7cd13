package storage

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkIngestParallel measures durable ingest into one event DB from
// many goroutines (group commit), with a 1 KiB JSON body, two deliveries per
// event and synchronous=full: what the handler does after routing.
func BenchmarkIngestParallel(b *testing.B) {
	m, err := NewWebhookDBManager(b.TempDir(), ManagerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.CloseAll(context.Background()) })
	id := "7f0c3a52-6a3e-4f0e-9d3b-2f4d8f1b9a10"
	body := []byte(`{"data":"` + strings.Repeat("x", 1024-11) + `"}`)
	headers := http.Header{"Content-Type": {"application/json"}, "User-Agent": {"bench"}, "X-Request-Id": {"abc"}}
	targets := pendingTo("t1", "t2")
	b.SetParallelism(32) // 32 × GOMAXPROCS goroutines: concurrent requests
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			err := m.With(context.Background(), id, func(db *WebhookDB) error {
				_, err := db.Ingest(&Event{Method: "POST", Path: "/hooks/k", Headers: headers, Body: body,
					ContentType: "application/json"}, targets)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkIngestDatabaseTarget is the harness's ingest check without HTTP:
// one database target (its delivery stored delivered at ingest), bodies of
// 1 and 64 KiB, synchronous=full, 64 concurrent requests.
func BenchmarkIngestDatabaseTarget(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			m, err := NewWebhookDBManager(b.TempDir(), ManagerOptions{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = m.CloseAll(context.Background()) })
			id := "7f0c3a52-6a3e-4f0e-9d3b-2f4d8f1b9a10"
			body := []byte(`{"data":"` + strings.Repeat("x", size-11) + `"}`)
			headers := http.Header{"Content-Type": {"application/json"}, "User-Agent": {"bench"}, "X-Request-Id": {"abc"}}
			targets := targetsOf(nil, []string{"archive"})
			b.SetParallelism(32) // 32 × GOMAXPROCS (2 here) goroutines: the harness's 64 connections
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					err := m.With(context.Background(), id, func(db *WebhookDB) error {
						_, err := db.Ingest(&Event{Method: "POST", Path: "/hooks/k", Headers: headers, Body: body,
							ContentType: "application/json"}, targets)
						return err
					})
					if err != nil {
						b.Fatal(err)
					}
				}
			})
			b.StopTimer()
			_ = m.With(context.Background(), id, func(db *WebhookDB) error {
				b.ReportMetric(float64(b.N)/float64(db.commits.transactions.Load()), "events/tx")
				return nil
			})
		})
	}
}
