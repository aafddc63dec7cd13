package datadir

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/google/uuid"

	"github.com/webhooker/caddy-webhooker/admin"
	"github.com/webhooker/caddy-webhooker/cluster"
	"github.com/webhooker/caddy-webhooker/engine"
	"github.com/webhooker/caddy-webhooker/storage"
)

// ClusterDir is where the embedded NATS server keeps its JetStream files,
// under the data directory.
const ClusterDir = "nats"

// startCluster joins the cluster of opts.Cluster: from then on an ingest
// goes to the replicated intake stream, and this node applies and
// delivers the partitions pinned to it.
func (d *Dir) startCluster() error {
	maxBytes := d.opts.IntakeSize
	if maxBytes <= 0 {
		maxBytes = storage.DefaultIntakeSize
	}
	c, err := cluster.Start(*d.opts.Cluster, cluster.Settings{
		StoreDir:   filepath.Join(d.path, ClusterDir),
		MaxMessage: int(d.opts.MaxEventBytes) + clusterMetaRoom,
		MaxBytes:   maxBytes,
		SyncAlways: d.opts.Synchronous == storage.SynchronousFull,
		Logger:     d.opts.Logger.Named("cluster"),
	}, clusterApplier{d})
	if err != nil {
		return err
	}
	d.cluster = c
	if err := c.ServeReads(d.answerRead); err != nil {
		c.Close()
		return fmt.Errorf("cluster: answering the other nodes' reads: %w", err)
	}
	// The event-log pages on every node hear of what changes here, and
	// this node's of what changes on the others.
	if err := c.HearChanges(func(ids []string) {
		for _, id := range ids {
			d.changes.PublishHere(id)
		}
	}); err != nil {
		c.Close()
		return fmt.Errorf("cluster: the other nodes' live updates: %w", err)
	}
	d.changes.Forward(c.Changed)
	if err := d.replicateConfig(); err != nil {
		c.Close()
		return fmt.Errorf("cluster: the configuration log: %w", err)
	}
	return nil
}

// clusterMetaRoom is what a message holds beside the body: the request's
// headers and the event's fields.
const clusterMetaRoom = 1 << 20

// Cluster is this node's part in the cluster, nil when not in cluster mode.
func (d *Dir) Cluster() *cluster.Cluster { return d.cluster }

// clusterIngest publishes ev to the replicated intake and returns once a
// quorum holds it. Its deliveries are made by its partition's owner.
func (d *Dir) clusterIngest(ctx context.Context, route storage.Route, ev *storage.Event) error {
	ids := make([]string, len(route.Targets))
	for i, t := range route.Targets {
		ids[i] = t.ID
	}
	if ev.ID == "" {
		// The id travels with the event: it is what a node that gets
		// the message again finds the event by.
		id, err := uuid.NewV7()
		if err != nil {
			return err
		}
		ev.ID = id.String()
	}
	return d.cluster.Publish(ctx, route.Webhook.ID, ev, ids)
}

// clusterApplier stores the events of the partitions pinned to this node
// and hands their deliveries to the engine.
type clusterApplier struct{ d *Dir }

func (a clusterApplier) Apply(ctx context.Context, m *cluster.Message) ([]string, func(), error) {
	d := a.d
	snap := d.engine.Snapshot()
	wh, ok := snap.Webhook(m.WebhookID)
	if !ok {
		return nil, nil, fmt.Errorf("%w: %s", cluster.ErrNotHere, m.WebhookID)
	}
	targets := make([]storage.Target, 0, len(m.TargetIDs))
	for _, id := range m.TargetIDs {
		// A target deleted since the ingest gets no delivery, as in a
		// single node whose applier runs after the delete.
		if t, ok := snap.Target(m.WebhookID, id); ok {
			targets = append(targets, t)
		}
	}
	var open []storage.Delivery
	stored := false
	err := d.events.With(ctx, m.WebhookID, func(db *storage.WebhookDB) error {
		// Stored here before: this node applied it, then lost its pin or
		// its word to the stream, or every node stopped and the stream
		// hands out again what was not acknowledged. Its engine has its
		// open deliveries (since, or from its start-up scan).
		var err error
		if open, stored, err = db.IngestOnce(m.Event, targets); err != nil || !stored {
			return err
		}
		open = nil
		deliveries, err := db.Deliveries(ctx, m.Event.ID)
		for _, dl := range deliveries {
			if !final(dl.Status) {
				open = append(open, dl)
			}
		}
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	ids := make([]string, len(open))
	for i, dl := range open {
		ids[i] = dl.ID
	}
	if stored {
		return ids, nil, nil
	}
	return ids, func() {
		if len(open) > 0 {
			d.engine.Notify(engine.TasksForEvent(m.WebhookID, m.Event, open, targets))
		}
		d.retention.ingested(wh, m.Event.ReceivedAt)
		d.changes.Publish(m.WebhookID)
	}, nil
}

func (a clusterApplier) Final(ctx context.Context, webhookID string, ids []string) ([]string, error) {
	var over []string
	err := a.d.events.With(ctx, webhookID, func(db *storage.WebhookDB) error {
		for _, id := range ids {
			dl, err := db.Delivery(ctx, id)
			if err != nil {
				return err
			}
			if final(dl.Status) {
				over = append(over, id)
			}
		}
		return nil
	})
	return over, err
}

// Serial: an event going to an ordered target is applied in the stream's
// order, since ordered targets take events in the order they were stored.
func (a clusterApplier) Serial(m *cluster.Message) bool {
	snap := a.d.engine.Snapshot()
	for _, id := range m.TargetIDs {
		if t, ok := snap.Target(m.WebhookID, id); ok && t.Options.Ordered {
			return true
		}
	}
	return false
}

// final says whether a delivery with status s is over.
func final(s storage.DeliveryStatus) bool {
	return s == storage.DeliveryDelivered || s == storage.DeliveryFailed
}

// clusterDone tells the cluster that a delivery is final, so that the
// message of its event is acknowledged once all its deliveries are.
func (d *Dir) clusterDone(a engine.AttemptInfo) {
	if d.cluster != nil && final(a.Status) {
		d.cluster.Done(a.DeliveryID)
	}
}

// clusterState is this node's part in the cluster, for the event-log page.
func (d *Dir) clusterState() admin.ClusterState {
	f := d.cluster.Figures()
	return admin.ClusterState{
		Node: f.Node, Ready: f.Ready && f.Connected, Routes: f.Routes, Partitions: cluster.Partitions,
		PartitionsOwned: f.PartitionsOwned, HeldMessages: f.Held, ConfigApplied: d.main.ConfigApplied(),
	}
}

// closeCluster leaves the cluster: what this node had not finished is
// handed out again by the stream.
func (d *Dir) closeCluster() error {
	if d.cluster == nil {
		return nil
	}
	return d.cluster.Close()
}
