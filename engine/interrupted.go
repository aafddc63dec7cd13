package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/storage"
)

// Crash loops: an http attempt is marked in its event DB before it goes out,
// and the write that records it clears the mark. A mark found by the
// start-up scan is an attempt the previous process died during (a target
// that kills the gateway, say): it is counted, so that max_retries ends what
// would otherwise be resent at every start, for ever.

// InterruptedError is the error of an attempt counted because the gateway
// died while it was in flight.
const InterruptedError = "interrupted: the gateway stopped during this attempt (crash or kill -9); counted as an attempt"

// markInFlight durably marks the delivery as having an attempt in flight,
// before the attempt goes out.
func (e *Engine) markInFlight(t *Task, at time.Time) error {
	ctx := context.Background()
	return e.events.WithDelivered(ctx, t.WebhookID, func(db *storage.WebhookDB) error {
		return db.MarkAttemptStarted(ctx, t.DeliveryID, at)
	})
}

// clearInFlight removes the mark of an attempt a stop cut short: it is not
// recorded, and the next start must not count it either.
func (e *Engine) clearInFlight(t *Task) {
	ctx := context.Background()
	err := e.events.With(ctx, t.WebhookID, func(db *storage.WebhookDB) error {
		return db.ClearAttemptStarted(ctx, t.DeliveryID)
	})
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		// The next start counts it as interrupted: one attempt too many,
		// never one too few.
		e.log().Error("clearing the mark of an attempt cut short by a stop",
			zap.String("webhook", t.WebhookID), zap.String("delivery", t.DeliveryID), zap.Error(err))
	}
}

// countInterrupted records the interrupted attempt of an open delivery the
// start-up scan found marked and took in hand, with the usual outcome:
// failed when max_retries is spent, else retrying after its backoff. It
// reports false when the delivery is to be handled as any open one: its
// target is gone or no longer http (the attempt then fails it saying so), or
// its mark changed since it was read.
func (e *Engine) countInterrupted(webhookID string, d storage.Delivery, a storage.InterruptedAttempt) bool {
	t := &Task{WebhookID: webhookID, DeliveryID: d.ID, Target: storage.Target{ID: d.TargetID, WebhookID: webhookID}}
	target, problem := e.currentTarget(t)
	if problem != "" || target.Type != storage.TargetHTTP {
		return false
	}
	t.Target = target
	s := settingsOf(target)
	attempt := d.Attempts + 1
	result := storage.DeliveryResult{DeliveryID: d.ID, Attempt: attempt, StartedAt: a.StartedAt, Error: InterruptedError}
	out := storage.DeliveryOutcome{Status: storage.DeliveryFailed, LastError: gaveUp(attempt, InterruptedError)}
	if attempt <= s.maxRetries {
		out = storage.DeliveryOutcome{Status: storage.DeliveryRetrying,
			NextAttemptAt: time.Now().Add(s.backoff.Delay(attempt)), LastError: InterruptedError}
	}
	ctx := context.Background()
	err := e.events.With(ctx, webhookID, func(db *storage.WebhookDB) error {
		return db.RecordInterruptedAttempt(ctx, a, result, out)
	})
	switch {
	case errors.Is(err, storage.ErrNotInterrupted):
		return false
	case err != nil:
		e.storageTrouble(t, "recording an interrupted attempt", err)
		return true
	}
	e.log().Warn("a delivery attempt was in flight when the gateway stopped: counted as an attempt",
		zap.String("webhook", webhookID), zap.String("target", target.Name), zap.String("delivery", d.ID),
		zap.Int("attempt", attempt), zap.Int("max_retries", s.maxRetries), zap.String("status", string(out.Status)))
	t.Event.ID = d.EventID
	e.recorded(t, result, out.Status, out.Status == storage.DeliveryFailed, out.LastError)
	if out.Status == storage.DeliveryRetrying {
		e.schedule(deliveryRef{webhookID: webhookID, deliveryID: d.ID}, out.NextAttemptAt)
		return true
	}
	e.release(d.ID)
	return true
}

// gaveUp is the last error of a delivery whose retries are spent.
func gaveUp(attempt int, why string) string {
	tries := "attempts"
	if attempt == 1 {
		tries = "attempt" // max_retries 0
	}
	return fmt.Sprintf("gave up after %d %s: %s", attempt, tries, why)
}
