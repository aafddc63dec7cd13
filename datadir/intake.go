package datadir

import (
	"context"

	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/engine"
	"github.com/webhooker/caddy-webhooker/storage"
)

// openIntake opens the data directory's intake, replaying what a crash
// left in it into the event DBs (see storage/intake.go).
func (d *Dir) openIntake(ctx context.Context) error {
	log := d.opts.Logger.Named("intake")
	in, err := storage.OpenIntake(ctx, d.path, d.opts.Synchronous, d.events, storage.IntakeOptions{
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
