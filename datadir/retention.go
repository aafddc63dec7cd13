package datadir

import (
	"context"
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
}

func newRetention(events *storage.WebhookDBManager, logger *zap.Logger) *retention {
	return &retention{events: events, logger: logger, last: make(map[string]time.Time)}
}

// ingested notes an event of w and prunes w if that is due.
func (r *retention) ingested(w *storage.Webhook) {
	if w.RetentionDays <= 0 {
		return
	}
	now := time.Now()
	r.mu.Lock()
	if now.Sub(r.last[w.ID]) < pruneInterval {
		r.mu.Unlock()
		return
	}
	r.last[w.ID] = now
	r.running.Add(1)
	r.mu.Unlock()

	go func() {
		defer r.running.Done()
		ctx := context.Background()
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

// wait waits for prunings under way.
func (r *retention) wait() { r.running.Wait() }
