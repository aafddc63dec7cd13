package datadir

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// The configuration made through the API reaches every node: the main DB's
// writes go through the cluster's configuration log (storage/configlog.go),
// which every node applies in order. What the Caddyfile declares stays each
// node's own.

// replicateConfig makes the main DB's writes go through the cluster's
// configuration log, from Open on.
func (d *Dir) replicateConfig() error {
	return d.main.Replicate(context.Background(), d.cluster, d.cluster.Node())
}

// followConfigLog applies the log from where this node left it, and
// publishes, once, the API configuration this node had before it ran in
// a cluster. It starts after the first Declare: a change to a target of a
// webhook this node's Caddyfile declares finds it.
func (d *Dir) followConfigLog() {
	d.cluster.FollowConfig(d.main.ConfigApplied, d.applyConfigChange)
	d.seeding.Add(1)
	go func() {
		defer d.seeding.Done()
		d.seedConfigLog()
	}()
}

// seedConfigLog publishes what this node's main DB had before it joined,
// trying until the log takes it or the directory closes.
func (d *Dir) seedConfigLog() {
	wait := 250 * time.Millisecond
	for {
		n, err := d.main.SeedConfigLog(d.background)
		if err == nil {
			if n > 0 {
				d.logger().Info("published this node's API configuration to the cluster", zap.Int("rows", n))
			}
			return
		}
		if d.background.Err() != nil {
			return
		}
		if wait >= 4*time.Second {
			d.logger().Warn("publishing this node's API configuration to the cluster: trying again", zap.Error(err))
		}
		select {
		case <-d.background.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// applyConfigChange applies a change from the configuration log to the
// main DB and puts it in force: a deleted webhook's event DB goes, a
// resumed target's deliveries run, the event log's pages are told.
func (d *Dir) applyConfigChange(ctx context.Context, seq uint64, change []byte) error {
	a, err := d.main.ApplyConfigChange(ctx, seq, change)
	if err != nil || a.Already {
		return err
	}
	log := d.logger()
	for _, id := range a.Deleted {
		if !d.events.Exists(id) {
			continue
		}
		if err := d.events.Delete(ctx, id); err != nil {
			log.Error("removing the event DB of a webhook deleted on another node", zap.String("webhook", id), zap.Error(err))
		}
	}
	if err := d.Reload(ctx); err != nil {
		return err
	}
	for _, id := range a.Resumed {
		d.engine.TargetResumed(id)
	}
	for _, c := range a.Clashes {
		if c.DeclaredBy != "" {
			log.Warn("an entrypoint made on another node has a key this node's Caddyfile declares: it is disabled here",
				zap.String("key", c.Key), zap.String("declared_by", c.DeclaredBy),
				zap.String("api_webhook", c.WebhookID), zap.String("api_entrypoint", c.EntrypointID))
			continue
		}
		log.Warn("an entrypoint made on this node before it joined the cluster has a key the cluster's configuration holds: it is disabled",
			zap.String("key", c.Key), zap.String("api_webhook", c.WebhookID), zap.String("api_entrypoint", c.EntrypointID))
	}
	for _, id := range a.Webhooks {
		d.changes.Publish(id)
	}
	log.Info("applied a configuration change", zap.Uint64("seq", seq), zap.String("from", a.Node),
		zap.Int("webhooks", len(a.Webhooks)))
	return nil
}

// ConfigLogFigures are this node's place in the cluster's configuration
// log, and how many of its writes were tried again because another node's
// change came first.
func (d *Dir) ConfigLogFigures() (applied, conflicts uint64) {
	return d.main.ConfigApplied(), d.main.ConfigConflicts()
}
