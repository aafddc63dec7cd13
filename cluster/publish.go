package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/webhooker/caddy-webhooker/storage"
)

// ErrNotReady: the intake stream is not set up yet (the cluster has not
// its quorum of nodes) or lost its quorum: the event was not acknowledged,
// the sender should try again (503).
var ErrNotReady = errors.New("cluster intake not ready: the stream has no quorum of nodes")

// ErrIntakeFull: the stream holds its MaxBytes of unfinished events (503).
var ErrIntakeFull = errors.New("cluster intake full: the stream holds as many unfinished events as it may, or cannot store")

// Header names of an intake message. The owner reads the message's meta,
// not these: Webhooker-Webhook is for whoever inspects the stream (`nats
// stream view`), Webhooker-Event also finds the first event of a repeat.
const (
	headerWebhook = "Webhooker-Webhook"
	headerEvent   = "Webhooker-Event"
)

// Publish stores ev, routed to targetIDs of webhookID, in the replicated
// intake, and returns once a quorum of the stream's replicas holds it: the
// caller may acknowledge it. An event whose dedup id came within the
// webhook's window, on any node, is not stored again: ev.Dedup.Repeat is
// set, and ev.ID becomes the first event's id (dedup.go).
func (c *Cluster) Publish(ctx context.Context, webhookID string, ev *storage.Event, targetIDs []string) error {
	select {
	case <-c.ready:
	default:
		return ErrNotReady
	}
	data, err := encode(&Message{WebhookID: webhookID, Event: ev, TargetIDs: targetIDs})
	if err != nil {
		return err
	}
	if max := c.set.MaxMessage; max > 0 && len(data) > max {
		return fmt.Errorf("event of %d bytes: over the cluster's message limit of %d", len(data), max)
	}
	if mp := c.nc.MaxPayload(); mp > 0 && int64(len(data)) > mp {
		return fmt.Errorf("event of %d bytes: over the NATS server's max_payload of %d", len(data), mp)
	}
	msg := &nats.Msg{Subject: subjectOf(PartitionOf(webhookID)), Data: data, Header: nats.Header{}}
	msg.Header.Set(headerWebhook, webhookID)
	msg.Header.Set(headerEvent, ev.ID)
	var (
		kv  jetstream.KeyValue
		k   string
		gen uint64
	)
	if ev.Dedup.Key != "" {
		window := ev.Dedup.Window
		if window <= 0 {
			window = storage.DefaultDedupWindow
		}
		lctx, cancel := context.WithTimeout(ctx, publishTimeout)
		defer cancel()
		if kv, err = c.bucket(lctx, dedupBucketOf(window)); err != nil {
			return fmt.Errorf("%w: %v", ErrNotReady, err)
		}
		k = dedupKey(webhookID, ev.Dedup.Key)
		first, err := dedupLookup(lctx, kv, k)
		if err != nil {
			return fmt.Errorf("%w: reading the dedup record: %v", ErrNotReady, err)
		}
		if first != nil {
			if c.now().Sub(time.UnixMilli(first.At)) < window {
				ev.Dedup.Repeat = true
				ev.ID = first.ID
				c.duplicates.Add(1)
				return nil
			}
			gen = first.Gen + 1 // its window has passed: a new event
		}
		msg.Header.Set(jetstream.MsgIDHeader, msgIDOf(webhookID, ev.Dedup.Key, gen))
	}
	// Within the request's deadline, but never past a few seconds: a
	// quorum that does not answer is a cluster in trouble, said as such.
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	ack, err := c.js.PublishMsg(pctx, msg)
	if err != nil {
		var apiErr *jetstream.APIError
		switch {
		case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum:
			return fmt.Errorf("event of %d bytes: over the intake stream's message limit", len(data))
		case errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStoreFailed:
			return fmt.Errorf("%w: %s", ErrIntakeFull, apiErr.Description)
		case ctx.Err() != nil:
			return ctx.Err()
		}
		// No answer in time, no responders, a stream without its
		// leader: the quorum is not there.
		return fmt.Errorf("%w: %v", ErrNotReady, err)
	}
	if ack.Duplicate {
		// Another ingest of this generation came first, on any node.
		ev.Dedup.Repeat = true
		ev.ID = c.firstOf(ctx, kv, webhookID, k, gen, ack.Sequence)
		c.duplicates.Add(1)
		return nil
	}
	c.published.Add(1)
	if kv != nil {
		// The stream keeps the message only until it is finished, and its
		// id for streamDedup: the record keeps the first event for the
		// window.
		// Stored: the record is written even if the sender hangs up now.
		rec, _ := json.Marshal(dedupRecord{ID: ev.ID, At: c.now().UnixMilli(), Gen: gen})
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
		defer cancel()
		if _, err := kv.Put(rctx, k, rec); err != nil {
			c.log.Warn("keeping the dedup record of an event: a repeat may be answered without its id, or past the stream's memory make a second event",
				zap.String("webhook_id", webhookID), zap.String("event_id", ev.ID), zap.Error(err))
		}
	}
	return nil
}

// publishTimeout bounds the wait for a quorum's acknowledgement.
const publishTimeout = 5 * time.Second

// errCodeStoreFailed is JetStream's "store failed" (JSStreamStoreFailedF),
// which a stream at its MaxBytes with DiscardNew answers.
const errCodeStoreFailed jetstream.ErrorCode = 10077
