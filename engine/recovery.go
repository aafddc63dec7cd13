package engine

import (
	"sync"

	"go.uber.org/zap"
)

// scanCounts is what the start-up read of one event DB found.
type scanCounts struct {
	runNow int // queued to run at once (pending, or retrying and due)
	// onTimers are the retrying deliveries that wait for their time: in
	// their event DB, not in hand, their webhook's entry in the schedule
	// set for the first (logged as retrying_on_timers, the name it had
	// when each had a timer).
	onTimers    int
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
	e.log().Info("recovered deliveries",
		zap.Int("pending_run_now", r.found.runNow), zap.Int("retrying_on_timers", r.found.onTimers),
		zap.Int("interrupted_attempts_counted", r.found.interrupted), zap.Int("webhooks_scanned", r.scanned))
	r.mu.Unlock()
	if e.opts.Recovered != nil {
		e.opts.Recovered()
	}
}
