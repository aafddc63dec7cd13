package datadir

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/storage"
)

// pruneInterval is how often, at most, a webhook's old events are pruned.
const pruneInterval = time.Hour

// retention prunes events older than their webhook's retention_days. It is
// driven by ingest, not by a clock: an event arriving for a webhook whose
// last pruning is over an hour old starts one in the background. An idle
// gateway does nothing; old events of a webhook that receives nothing wait
// for its next event.
type retention struct {
	events *storage.WebhookDBManager
	logger *zap.Logger

	mu      sync.Mutex
	last    map[string]time.Time // webhook id -> when its last pruning started
	running sync.WaitGroup
	// prunings is the context of the prunings, ended by stop: a pruning is
	// maintenance that the next event runs again, and a shutdown must not
	// wait behind one (a chunk can wait 10 s for a write lock, each).
	prunings context.Context
	stop     context.CancelFunc
}

func newRetention(events *storage.WebhookDBManager, logger *zap.Logger) *retention {
	ctx, stop := context.WithCancel(context.Background())
	return &retention{events: events, logger: logger, last: make(map[string]time.Time), prunings: ctx, stop: stop}
}

// ingested notes an event of w and prunes w if that is due.
func (r *retention) ingested(w *storage.Webhook) {
	if w.RetentionDays <= 0 {
		return
	}
	now := time.Now()
	r.mu.Lock()
	if now.Sub(r.last[w.ID]) < pruneInterval || r.prunings.Err() != nil {
		r.mu.Unlock()
		return
	}
	r.last[w.ID] = now
	r.running.Add(1)
	r.mu.Unlock()

	go func() {
		defer r.running.Done()
		ctx := r.prunings
		var n int
		err := r.events.With(ctx, w.ID, func(db *storage.WebhookDB) error {
			var err error
			n, err = db.PruneRetention(ctx, now, w.RetentionDays)
			return err
		})
		if err != nil {
			r.logger.Error("pruning old events", zap.String("webhook", w.Name), zap.Error(err))
			return
		}
		if n > 0 {
			r.logger.Info("pruned old events", zap.String("webhook", w.Name),
				zap.Int("events", n), zap.Int("retention_days", w.RetentionDays))
		}
	}()
}

// close cuts the prunings under way short, starts no more, and waits for
// them to end until ctx is done.
func (r *retention) close(ctx context.Context) error {
	r.mu.Lock()
	r.stop() // under mu: no pruning joins running after it
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.running.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("prunings still under way: %w", ctx.Err())
	}
}
