package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// The operator's recovery tools: resume a paused target, retry a delivery
// now, cancel one. Each writes to the event DB first, then changes what the
// engine holds, so that a restart in between loses nothing.

// TargetResumed tells the engine that a target of webhookID is no longer
// paused (the new configuration is in force already): the webhook is due
// now, its event DB is read, and the deliveries that waited run.
func (e *Engine) TargetResumed(webhookID string) { e.wantScan(webhookID) }

// RetryNow attempts an open (pending or retrying) delivery now: its next
// attempt time is set to now, and its webhook is due now, so that it is
// read back and queued. A delivery already queued or in flight is left to
// run. A target's open
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
	if e.stopFaultTimer(deliveryID) {
		// In hand, waiting out a storage fault: tried again now.
		e.requeue(deliveryRef{webhookID: webhookID, deliveryID: deliveryID})
		return nil
	}
	e.wantScan(webhookID)
	return nil
}

// Cancel ends an open delivery as failed ("cancelled by the operator") and
// lets go of it; its webhook's due time is read again from its event DB,
// since the one it waited for may be gone. An attempt in flight finishes,
// and is recorded without reviving it (see WebhookDB.RecordAttemptOutcome).
// Errors as RetryNow.
func (e *Engine) Cancel(ctx context.Context, webhookID, deliveryID string) error {
	err := e.withLiveWebhook(ctx, webhookID, func(db *storage.WebhookDB) error {
		return db.CancelDelivery(ctx, deliveryID)
	})
	if err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	// Queued, parked or in flight, it is let go when read back or when its
	// attempt is recorded: storage says it is no longer open. An attempt
	// recorded just before the cancel may be about to tell the schedule of
	// it: marked cancelled first, it does not (schedule).
	if _, inHand := e.owned.Load(deliveryID); inHand {
		e.cancelled.Store(deliveryID, struct{}{})
	}
	if e.stopFaultTimer(deliveryID) {
		e.releaseDone(webhookID, deliveryID)
	}
	if snap := e.snapshot.Load(); snap != nil && len(orderedTargets(snap, webhookID)) > 0 {
		// It may be the head of a line waiting for its time: the reader
		// checks the lines, and the next goes if it was.
		e.wantScan(webhookID)
	}
	e.refreshDue(webhookID, func() (at time.Time, ok bool, err error) {
		err = e.withLiveWebhook(ctx, webhookID, func(db *storage.WebhookDB) error {
			at, ok, err = db.NextRetryAt(ctx, time.Time{})
			return err
		})
		return at, ok, err
	})
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

// stopFaultTimer stops the timer of a delivery in hand waiting out a
// storage fault, and reports whether it stopped one before it fired (the
// delivery is then still in hand, and the caller's to requeue or let go).
func (e *Engine) stopFaultTimer(deliveryID string) bool {
	e.timersMu.Lock()
	defer e.timersMu.Unlock()
	t := e.faultTimers[deliveryID]
	if t == nil || !t.Stop() {
		return false
	}
	delete(e.faultTimers, deliveryID)
	return true
}
