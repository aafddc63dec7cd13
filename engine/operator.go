package engine

import (
	"context"
	"fmt"

	"github.com/webhooker/caddy-webhooker/storage"
)

// The operator's recovery tools: resume a paused target, retry a delivery
// now, cancel one. Each writes to the event DB first, then changes what the
// engine holds, so that a restart in between loses nothing.

// TargetResumed tells the engine that a target of webhookID is no longer
// paused (the new configuration is in force already): the webhook's event
// DB is scanned, and the deliveries that waited run.
func (e *Engine) TargetResumed(webhookID string) { e.wantScan(webhookID) }

// RetryNow attempts an open (pending or retrying) delivery now: its retry
// timer is stopped, its next attempt time set to now, and it is queued. A
// delivery already queued or in flight is left to run. A target's open
// circuit breaker still holds it, and a paused target's delivery still
// waits. A delivery that is not open is storage.ErrNotOpen; an unknown one
// (or webhook) storage.ErrNotFound.
func (e *Engine) RetryNow(ctx context.Context, webhookID, deliveryID string) error {
	err := e.withLiveWebhook(ctx, webhookID, func(db *storage.WebhookDB) error {
		return db.RetryDeliveryNow(ctx, deliveryID)
	})
	if err != nil {
		return fmt.Errorf("retry now: %w", err)
	}
	ref := deliveryRef{webhookID: webhookID, deliveryID: deliveryID}
	if e.stopTimer(deliveryID) {
		e.requeue(ref) // it was in hand, on its timer
		return nil
	}
	if _, inHand := e.owned.LoadOrStore(deliveryID, struct{}{}); !inHand {
		e.requeue(ref)
	}
	return nil
}

// Cancel ends an open delivery as failed ("cancelled by the operator") and
// lets go of it: its timer is stopped. An attempt in flight finishes, and is
// recorded without reviving it (see WebhookDB.RecordAttemptOutcome). Errors
// as RetryNow.
func (e *Engine) Cancel(ctx context.Context, webhookID, deliveryID string) error {
	err := e.withLiveWebhook(ctx, webhookID, func(db *storage.WebhookDB) error {
		return db.CancelDelivery(ctx, deliveryID)
	})
	if err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	// Queued, parked or in flight, it is let go when read back or when its
	// attempt is recorded: storage says it is no longer open. An attempt
	// recorded just before the cancel may be about to set its timer:
	// marked cancelled first, it sets none (schedule); set already, the
	// timer is stopped here.
	if _, inHand := e.owned.Load(deliveryID); inHand {
		e.cancelled.Store(deliveryID, struct{}{})
	}
	if e.stopTimer(deliveryID) {
		e.release(deliveryID)
	}
	return nil
}

// withLiveWebhook runs fn on the event DB of a webhook of the configuration
// in force.
func (e *Engine) withLiveWebhook(ctx context.Context, webhookID string, fn func(*storage.WebhookDB) error) error {
	if !e.webhookLive(webhookID) || !e.events.Exists(webhookID) {
		return fmt.Errorf("webhook %s: %w", webhookID, storage.ErrNotFound)
	}
	return e.events.With(ctx, webhookID, fn)
}

// stopTimer stops the retry timer of a delivery, and reports whether it
// stopped one before it fired (the delivery is then still in hand, and
// the caller's to requeue or let go).
func (e *Engine) stopTimer(deliveryID string) bool {
	e.timersMu.Lock()
	defer e.timersMu.Unlock()
	t := e.timers[deliveryID]
	if t == nil || !t.Stop() {
		return false
	}
	delete(e.timers, deliveryID)
	for target, held := range e.held {
		delete(held, deliveryID)
		if len(held) == 0 {
			delete(e.held, target)
		}
	}
	return true
}
