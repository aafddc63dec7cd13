package datadir

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/internal/duequeue"
	"github.com/webhooker/caddy-webhooker/storage"
)

const (
	// pruneInterval is the least time between two prunings of one webhook:
	// a webhook receiving an event a second has its old events pruned in
	// hourly batches, not one pruning per event come of age. It is also how
	// long a pruning that failed, or that had to keep an old event whose
	// deliveries are still open, waits before it looks again.
	pruneInterval = time.Hour
	// startupDelay and startupStagger spread the first prunings after a
	// start: every webhook with a retention gets one, since what came of age
	// while the gateway was down has no other trigger, but none before the
	// recovery scan has had its minute, and one after the other, 10,000
	// webhooks over 8 minutes, not all at once.
	startupDelay   = time.Minute
	startupStagger = 50 * time.Millisecond
)

// clock is the time retention reads and the one timer it sets; tests put a
// fake one in, never sleeping for a retention.
type clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) stopper
}

type stopper interface{ Stop() bool }

type realClock struct{}

func (realClock) Now() time.Time                              { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) }

// retention prunes events older than their webhook's retention_days. It is
// driven by the events themselves, not by polling: each webhook with a
// retention and events has a due time, when its oldest event comes of age,
// and one timer waits for the earliest due time of all. A pruning then
// reads the oldest event left and sets the webhook's next due time; a
// webhook left without events has none until its next event (ingested).
// So a webhook that stopped receiving still loses its old events, and an
// idle gateway wakes only when an event comes of age. The state is in
// memory; a start gives every webhook with a retention one pruning
// (start), staggered, which finds its due time again.
type retention struct {
	events *storage.WebhookDBManager
	logger *zap.Logger
	clock  clock
	// beforePrune and afterPrune, if set, are told of each pruning of a
	// webhook (afterPrune with the number of events deleted), for tests.
	beforePrune func(webhookID string)
	afterPrune  func(webhookID string, pruned int)

	mu       sync.Mutex
	webhooks map[string]*retained      // those of the configuration in force
	due      duequeue.Queue[*retained] // webhooks with a due time, earliest first
	timer    stopper                   // set for the earliest due time, nil when none is
	timerAt  time.Time
	timerGen uint64 // tells the current timer's callback from a stopped one's
	started  bool
	// work are webhooks come of age, waiting for the pruner: one goroutine,
	// running while there is work, so that prunings never pile up.
	work     []*retained
	pruning  bool
	running  sync.WaitGroup
	prunings context.Context // ended by close
	stop     context.CancelFunc
}

// retained is a webhook as retention sees it.
type retained struct {
	id, name   string
	days       int       // retention_days; 0: kept for ever
	lastPruned time.Time // when its last pruning started
}

func newRetention(events *storage.WebhookDBManager, logger *zap.Logger) *retention {
	ctx, stop := context.WithCancel(context.Background())
	return &retention{events: events, logger: logger, clock: realClock{},
		webhooks: make(map[string]*retained), prunings: ctx, stop: stop}
}

// configure takes the webhooks of the configuration now in force: a
// changed retention_days applies at once (a pruning is due now), a webhook
// gone is forgotten, and one new to a started gateway gets a pruning soon,
// since a webhook declared again finds its old event DB.
func (r *retention) configure(webhooks []*storage.Webhook) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	seen := make(map[string]bool, len(webhooks))
	for _, w := range webhooks {
		seen[w.ID] = true
		st, known := r.webhooks[w.ID]
		if !known {
			st = &retained{id: w.ID}
			r.webhooks[w.ID] = st
		}
		changed := known && st.days != w.RetentionDays
		st.name, st.days = w.Name, w.RetentionDays
		switch {
		case st.days <= 0:
			r.unschedule(st)
		case !r.started:
		case changed:
			r.schedule(st, now)
		case !known:
			r.schedule(st, now.Add(startupDelay))
		}
	}
	for id, st := range r.webhooks {
		if !seen[id] {
			r.unschedule(st)
			delete(r.webhooks, id)
		}
	}
	r.arm()
}

// start gives every webhook with a retention a pruning, one after the
// other from startupDelay on. It reads nothing: those prunings find the
// due times.
func (r *retention) start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started || r.prunings.Err() != nil {
		return
	}
	r.started = true
	var kept []*retained
	for _, st := range r.webhooks {
		if st.days > 0 {
			kept = append(kept, st)
		}
	}
	slices.SortFunc(kept, func(a, b *retained) int { return strings.Compare(a.id, b.id) })
	first := r.clock.Now().Add(startupDelay)
	for i, st := range kept {
		r.schedule(st, first.Add(time.Duration(i)*startupStagger))
	}
	r.arm()
}

// ingested notes an event of w received at receivedAt: a webhook without a
// due time (it had no events) gets one, when that event comes of age; one
// with a due time keeps it, which is no later (its oldest event is older),
// or only staggered at start.
func (r *retention) ingested(w *storage.Webhook, receivedAt time.Time) {
	if w.RetentionDays <= 0 {
		return
	}
	cutoffAge, ok := retentionAge(w.RetentionDays)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.webhooks[w.ID]
	if !r.started || st == nil || st.days <= 0 || r.prunings.Err() != nil {
		return // not started: start schedules it
	}
	due := comesOfAge(receivedAt, cutoffAge)
	if floor := st.lastPruned.Add(pruneInterval); due.Before(floor) {
		due = floor
	}
	// Mostly st is due earlier already (its oldest event comes of age
	// first): then nothing changes, and the timer is left as it is.
	if r.due.SetEarlier(st, due) {
		r.arm()
	}
}

// retentionAge is how old an event is when retentionDays prunes it; ok is
// false when it never is (see storage.RetentionCutoff).
func retentionAge(retentionDays int) (time.Duration, bool) {
	var zero time.Time
	cutoff, ok := storage.RetentionCutoff(zero, retentionDays)
	return zero.Sub(cutoff), ok
}

// comesOfAge is when an event received at receivedAt is older than age,
// the first time a pruning deletes it (storage prunes those received
// strictly before the cutoff, in nanoseconds).
func comesOfAge(receivedAt time.Time, age time.Duration) time.Time {
	return receivedAt.Add(age + time.Nanosecond)
}

// schedule makes st due at due, or earlier if it is due earlier already.
// Under mu; arm afterwards.
func (r *retention) schedule(st *retained, due time.Time) {
	r.due.SetEarlier(st, due)
}

// unschedule takes st's due time out. Under mu; arm afterwards.
func (r *retention) unschedule(st *retained) {
	r.due.Remove(st)
}

// arm sets the one timer for the earliest due time, or none when nothing is
// due. Under mu.
func (r *retention) arm() {
	_, next, ok := r.due.Peek()
	if !ok || r.prunings.Err() != nil {
		r.disarm()
		return
	}
	if r.timer != nil && r.timerAt.Equal(next) {
		return
	}
	r.disarm()
	gen := r.timerGen
	r.timerAt = next
	r.timer = r.clock.AfterFunc(next.Sub(r.clock.Now()), func() { r.fire(gen) })
}

func (r *retention) disarm() {
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.timerGen++ // a callback already on its way is now stale
}

// fire hands the webhooks come of age to the pruner and sets the timer for
// the next.
func (r *retention) fire(gen uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if gen != r.timerGen || r.prunings.Err() != nil {
		return
	}
	r.timer = nil
	now := r.clock.Now()
	for st, _, ok := r.due.PopDue(now); ok; st, _, ok = r.due.PopDue(now) {
		r.work = append(r.work, st)
	}
	r.arm()
	if len(r.work) > 0 && !r.pruning {
		r.pruning = true
		r.running.Add(1)
		go r.prune()
	}
}

// prune prunes the webhooks in work, one after the other, until none is
// left.
func (r *retention) prune() {
	defer r.running.Done()
	for {
		r.mu.Lock()
		if len(r.work) == 0 || r.prunings.Err() != nil {
			r.work, r.pruning = nil, false
			r.mu.Unlock()
			return
		}
		st := r.work[0]
		r.work = r.work[1:]
		if r.webhooks[st.id] != st || st.days <= 0 {
			r.mu.Unlock() // gone from the configuration, or kept for ever now
			continue
		}
		now := r.clock.Now()
		st.lastPruned = now
		id, name, days := st.id, st.name, st.days
		r.mu.Unlock()

		if r.beforePrune != nil {
			r.beforePrune(id)
		}
		n, oldest, err := r.pruneWebhook(id, now, days)
		r.mu.Lock()
		if r.webhooks[id] == st && st.days > 0 && r.prunings.Err() == nil {
			// An event ingested meanwhile may have made it due already:
			// schedule keeps the earlier time.
			next := now.Add(pruneInterval) // after a failure, or for an old event kept open
			if age, ok := retentionAge(st.days); ok && err == nil && !oldest.IsZero() && comesOfAge(oldest, age).After(next) {
				next = comesOfAge(oldest, age)
			}
			if err == nil && oldest.IsZero() {
				r.arm() // no event left: none is due until the next one
			} else {
				r.schedule(st, next)
				r.arm()
			}
		}
		r.mu.Unlock()

		switch {
		case err != nil && errors.Is(err, context.Canceled) && r.prunings.Err() != nil:
			// cut short by close: the next start prunes again
		case err != nil:
			r.logger.Error("pruning old events", zap.String("webhook", name), zap.Error(err))
		case n > 0:
			r.logger.Info("pruned old events", zap.String("webhook", name),
				zap.Int("events", n), zap.Int("retention_days", days))
		}
		if r.afterPrune != nil {
			r.afterPrune(id, n)
		}
	}
}

// pruneWebhook prunes webhook id's events older than days before now, and
// reads when its oldest remaining event was received (zero: none is left).
// A webhook without an event DB has nothing to prune: none is created.
func (r *retention) pruneWebhook(id string, now time.Time, days int) (n int, oldest time.Time, err error) {
	if !r.events.Exists(id) {
		return 0, time.Time{}, nil
	}
	ctx := r.prunings
	err = r.events.With(ctx, id, func(db *storage.WebhookDB) error {
		var err error
		if n, err = db.PruneRetention(ctx, now, days); err != nil {
			return err
		}
		at, ok, err := db.OldestEventAt(ctx)
		if ok {
			oldest = at
		}
		return err
	})
	return n, oldest, err
}

// close cuts the prunings under way short, starts no more, stops the
// timer, and waits for the pruner to end until ctx is done.
func (r *retention) close(ctx context.Context) error {
	r.mu.Lock()
	r.stop() // under mu: no pruning joins running after it
	r.disarm()
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
