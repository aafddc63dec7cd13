package datadir

import (
	"context"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/engine"
	"github.com/webhooker/caddy-webhooker/storage"
)

// openIntake opens the data directory's intake, replaying what a crash
// left in it into the event DBs (see storage/intake.go).
func (d *Dir) openIntake(ctx context.Context) error {
	log := d.opts.Logger.Named("intake")
	in, err := storage.OpenIntake(ctx, d.path, d.opts.Synchronous, d.events, storage.IntakeOptions{
		Memory:  d.opts.IntakeMemory,
		Size:    d.opts.IntakeSize,
		Applied: d.applied,
		Trouble: func(webhookID string, events int, err error) {
			log.Error("acknowledged events not yet in their event DB: kept in the intake, tried again",
				zap.String("webhook_id", webhookID), zap.Int("events", events), zap.Error(err))
		},
	})
	if err != nil {
		return err
	}
	d.intake = in
	if r := in.Replayed(); r.Events > 0 {
		log.Info("the intake holds acknowledged events from before this start: applying them to their event DBs",
			zap.Int("events", r.Events), zap.Int("webhooks", r.Webhooks))
	}
	return nil
}

// applied hands the deliveries of events now in webhookID's event DB to
// the engine, and tells the event log's live updates. It runs on the
// intake's applier, or on whoever read the webhook first: it must not block.
func (d *Dir) applied(webhookID string, events []storage.AppliedEvent) {
	for _, a := range events {
		if len(a.Pending) > 0 {
			d.engine.Notify(engine.TasksForEvent(webhookID, a.Event, a.Pending, a.Targets))
		}
	}
	d.changes.Publish(webhookID)
}

// ApplyIntake applies every acknowledged event still in the intake to its
// webhook's event DB, for whoever reads those files directly (a backup, a
// test): the API and the engine need not, their reads apply first.
func (d *Dir) ApplyIntake() error { return d.intake.ApplyAll() }

// IntakeFigures reports what the intake holds (for metrics).
func (d *Dir) IntakeFigures() storage.IntakeFigures { return d.intake.Figures() }

// directIngests is how many ingests of one webhook in flight at once make
// it busy enough to go straight to its event DB.
const directIngests = 4

// ingestRoute says whether an ingest into webhookID goes straight into its
// event DB rather than through the intake, and counts it in flight until
// done is called.
//
// The intake shares one fsync among the events of every webhook, which is
// what events spread over many webhooks need; but each of its events is
// written twice (intake, then event DB) and deleted once. A webhook with
// several ingests in flight at once already has its own group commit to
// share, in its own event DB, so while its event DB is open its events go
// there directly, as they did before the intake: one write each. Measured
// with wrk, one webhook at 64 connections: 1 KiB about 2x and 64 KiB about
// 1.9x the requests/s of going through the intake (README, Performance).
func (d *Dir) ingestRoute(webhookID string) (direct bool, done func()) {
	v, ok := d.ingesting.Load(webhookID)
	if !ok {
		v, _ = d.ingesting.LoadOrStore(webhookID, new(atomic.Int64))
	}
	n := v.(*atomic.Int64)
	busy := n.Add(1) >= directIngests
	return busy && d.events.IsOpen(webhookID), func() { n.Add(-1) }
}

// ingestDirect stores ev in its webhook's event DB (group-committed with
// that webhook's other writes) and hands its deliveries to the engine.
// Reading the webhook first applies what the intake holds for it.
func (d *Dir) ingestDirect(ctx context.Context, route storage.Route, ev *storage.Event) error {
	var pending []storage.Delivery
	err := d.events.With(ctx, route.Webhook.ID, func(db *storage.WebhookDB) error {
		var err error
		pending, err = db.Ingest(ev, route.Targets)
		return err
	})
	if err != nil {
		return err
	}
	if len(pending) > 0 {
		d.engine.Notify(engine.TasksForEvent(route.Webhook.ID, ev, pending, route.Targets))
	}
	d.retention.ingested(route.Webhook, ev.ReceivedAt)
	d.changes.Publish(route.Webhook.ID)
	return nil
}
