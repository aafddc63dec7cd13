package engine

import (
	"sync"

	"go.uber.org/zap"
)

// scanCounts is what a scan of one event DB took in hand.
type scanCounts struct {
	runNow      int // queued to run at once (pending, or retrying and due)
	onTimers    int // retrying, on a timer for what remains of their backoff
	interrupted int // in flight when the previous process died: counted
}

// recoveryCounts adds up the start-up scans, so that the operator reads in
// one line, once they are all done, how much recovery picked up.
type recoveryCounts struct {
	mu        sync.Mutex
	remaining int // start-up scans still to come
	scanned   int
	found     scanCounts
}

// noteRecovered adds the counts of one start-up scan, and logs them all
// after the last one.
func (e *Engine) noteRecovered(found scanCounts) {
	r := &e.recovered
	r.mu.Lock()
	r.scanned++
	r.found.runNow += found.runNow
	r.found.onTimers += found.onTimers
	r.found.interrupted += found.interrupted
	r.remaining--
	last := r.remaining == 0
	r.mu.Unlock()
	if last {
		e.logRecovered()
	}
}

func (e *Engine) logRecovered() {
	r := &e.recovered
	r.mu.Lock()
	defer r.mu.Unlock()
	e.log().Info("recovered deliveries",
		zap.Int("pending_run_now", r.found.runNow), zap.Int("retrying_on_timers", r.found.onTimers),
		zap.Int("interrupted_attempts_counted", r.found.interrupted), zap.Int("webhooks_scanned", r.scanned))
}
