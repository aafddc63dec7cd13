package datadir

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/storage"
)

// The operator's recovery tools, as the API's Backend calls them: each
// changes the storage first, then the engine, then tells the event log's
// live updates (and the alerts, for a pause).

// SetTargetPaused pauses or resumes target targetID of wh: stored, put in
// force (the engine holds a paused target's deliveries back, neither
// attempting nor failing them), and on resume the engine runs what waited.
// A change of state is alerted (target.paused, target.resumed); asking for
// the state a target is in already changes nothing and alerts nothing.
func (d *Dir) SetTargetPaused(ctx context.Context, wh *storage.Webhook, targetID string, paused bool) (storage.Target, error) {
	// One at a time, so that "changed" compares with the state just before.
	d.pauseMu.Lock()
	defer d.pauseMu.Unlock()
	before, known := d.engine.Snapshot().Target(wh.ID, targetID)
	t, err := d.main.SetTargetPaused(ctx, wh.ID, targetID, paused)
	if err != nil {
		return storage.Target{}, err
	}
	// Committed: it is put in force whatever becomes of the request.
	if err := d.Reload(context.WithoutCancel(ctx)); err != nil {
		return t, fmt.Errorf("put the target's new state in force: %w", err)
	}
	if !paused {
		d.engine.TargetResumed(wh.ID)
	}
	if !known || before.Paused != paused {
		a := Alert{Type: AlertTargetPaused, At: time.Now(), WebhookID: wh.ID, WebhookName: wh.Name,
			TargetID: t.ID, TargetName: t.Name}
		msg := "target paused: its deliveries wait"
		if !paused {
			a.Type, msg = AlertTargetResumed, "target resumed"
		}
		d.logger().Info(msg, zap.String("webhook", wh.Name), zap.String("target", t.Name))
		d.alert(a)
	}
	d.changes.Publish(wh.ID)
	return t, nil
}

// RetryNow attempts an open delivery of webhook webhookID now (see
// engine.RetryNow): storage.ErrNotOpen for one that is not pending or
// retrying, storage.ErrNotFound for an unknown one.
func (d *Dir) RetryNow(ctx context.Context, webhookID, deliveryID string) error {
	if err := d.engine.RetryNow(ctx, webhookID, deliveryID); err != nil {
		return err
	}
	d.changes.Publish(webhookID)
	return nil
}

// CancelDelivery ends an open delivery of webhook webhookID as failed,
// "cancelled by the operator" (see engine.Cancel); errors as RetryNow.
func (d *Dir) CancelDelivery(ctx context.Context, webhookID, deliveryID string) error {
	if err := d.engine.Cancel(ctx, webhookID, deliveryID); err != nil {
		return err
	}
	if d.cluster != nil {
		// Cancelled is final: its event's message may be finished.
		d.cluster.Done(deliveryID)
	}
	d.changes.Publish(webhookID)
	return nil
}

// OldestOpenDelivery is, for each webhook of the configuration in force
// with open (pending or retrying) deliveries, when the oldest of them was
// created: the age of the oldest delivery still to do, for a gauge. It
// opens only the event DBs whose figures (storage.EventStats, kept in
// memory) count open deliveries: a scrape costs nothing for the others.
// A webhook whose file cannot be read is left out, and the error says
// which.
func (d *Dir) OldestOpenDelivery(ctx context.Context) (map[string]time.Time, error) {
	out := make(map[string]time.Time)
	var errs []error
	for _, w := range d.engine.Snapshot().Webhooks() {
		// What is applied: a scrape must not apply the intake's backlog
		// (intake_events counts it).
		st, err := d.events.AppliedStats(ctx, w.ID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st.Deliveries[storage.DeliveryPending]+st.Deliveries[storage.DeliveryRetrying] == 0 {
			continue
		}
		err = d.events.WithDelivered(ctx, w.ID, func(db *storage.WebhookDB) error {
			at, ok, err := db.OldestOpenDeliveryAt(ctx)
			if ok {
				out[w.ID] = at
			}
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("webhook %s: %w", w.Name, err))
		}
	}
	return out, errors.Join(errs...)
}
