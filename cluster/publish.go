package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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

// dedupWindow is how long the stream remembers a message id: that of an
// event with a dedup id, so that a repeat within it is answered as the
// first. It is the webhooks' default dedup window; a webhook's longer or
// shorter window does not apply in cluster mode (README).
const dedupWindow = storage.DefaultDedupWindow

// Header names of an intake message. The owner reads the message's meta,
// not these: Webhooker-Webhook is for whoever inspects the stream (`nats
// stream view`), Webhooker-Event also finds the first event of a repeat.
const (
	headerWebhook = "Webhooker-Webhook"
	headerEvent   = "Webhooker-Event"
)

// Publish stores ev, routed to targetIDs of webhookID, in the replicated
// intake, and returns once a quorum of the stream's replicas holds it: the
// caller may acknowledge it. An event whose dedup id the stream has seen
// within its window is not stored again: ev.Dedup.Repeat is set, and ev.ID
// becomes the first event's id.
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
	if ev.Dedup.Key != "" {
		msg.Header.Set(jetstream.MsgIDHeader, webhookID+"/"+ev.Dedup.Key)
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
		ev.Dedup.Repeat = true
		ev.ID = c.firstOf(ctx, webhookID, ev.Dedup.Key, ack.Sequence)
		c.duplicates.Add(1)
		return nil
	}
	c.published.Add(1)
	if ev.Dedup.Key != "" {
		// The stream keeps the message only until it is finished: the
		// first event's id of a dedup id is kept apart, for the repeats.
		if kv := c.dedup.Load(); kv != nil {
			if _, err := (*kv).Put(ctx, dedupKey(webhookID, ev.Dedup.Key), []byte(ev.ID)); err != nil {
				c.log.Warn("keeping the event id of a dedup id: a repeat may be answered without it",
					zap.String("webhook_id", webhookID), zap.String("event_id", ev.ID), zap.Error(err))
			}
		}
	}
	return nil
}

// publishTimeout bounds the wait for a quorum's acknowledgement.
const publishTimeout = 5 * time.Second

// errCodeStoreFailed is JetStream's "store failed" (JSStreamStoreFailedF),
// which a stream at its MaxBytes with DiscardNew answers.
const errCodeStoreFailed jetstream.ErrorCode = 10077

// dedupKey is the key of a webhook's dedup id in the dedup bucket (its
// keys take few characters: the id is hashed).
func dedupKey(webhookID, key string) string {
	sum := sha256.Sum256([]byte(key))
	return webhookID + "." + hex.EncodeToString(sum[:16])
}

// firstOf is the id of the event first stored with webhookID's dedup id
// key, which the stream took as the message at seq: from the dedup bucket
// (its Put may follow the repeat by a moment: asked again a few times), or
// the message while the stream still holds it. "" when neither has it (the
// node that stored it was lost before keeping its id): the repeat is
// answered without an id, and logged.
func (c *Cluster) firstOf(ctx context.Context, webhookID, key string, seq uint64) string {
	if kv := c.dedup.Load(); kv != nil {
		for try := range 5 {
			if e, err := (*kv).Get(ctx, dedupKey(webhookID, key)); err == nil {
				return string(e.Value())
			}
			if st := c.stream.Load(); st != nil {
				if m, err := (*st).GetMsg(ctx, seq); err == nil {
					return m.Header.Get(headerEvent)
				}
			}
			select {
			case <-ctx.Done():
				return ""
			case <-time.After(time.Duration(try+1) * 20 * time.Millisecond):
			}
		}
	}
	c.log.Warn("a repeated dedup id whose first event id is not known here: answered without it",
		zap.String("webhook_id", webhookID))
	return ""
}
