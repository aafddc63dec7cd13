package storage

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// With a small bound on open handles, concurrent ingests spread over more
// webhooks than the bound keep evicting and reopening event DBs: opening one
// while its previous handle is still closing must wait for the file's lock,
// not fail with "database is locked".
func TestReopenUnderEvictionWaitsForTheLock(t *testing.T) {
	m := newManager(t, ManagerOptions{MaxOpen: 4})
	ids := make([]string, 12)
	for i := range ids {
		ids[i] = newID(t)
	}
	var (
		ok, failed atomic.Int64
		firstErr   atomic.Value
		wg         sync.WaitGroup
	)
	deadline := time.Now().Add(3 * time.Second)
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; time.Now().Before(deadline); i++ {
				err := m.With(context.Background(), ids[i%len(ids)], func(db *WebhookDB) error {
					_, err := db.Ingest(&Event{Method: "POST", Path: fmt.Sprintf("/%d", i)}, pendingTo("t"))
					return err
				})
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d ingests failed while handles were evicted and reopened; first: %v", n, n+ok.Load(), firstErr.Load())
	}
	t.Logf("%d ingests over %d webhooks with 4 open at most", ok.Load(), len(ids))
}
