package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/storage"
)

// The configuration log: every change made through the API on any node,
// in one order, as a replicated stream that keeps them all (a node that
// joins later applies it from the start). Cluster is its storage.ConfigLog.
const (
	configStreamName = "WEBHOOKER_CONFIG"
	configSubject    = "webhooker.config"
	// maxConfigChange bounds one change: a write changes a few rows, a
	// seed every API row of a node (about 2 KiB each).
	maxConfigChange = 8 << 20
	// configTimeout bounds one call to the log.
	configTimeout = 5 * time.Second
)

var _ storage.ConfigLog = (*Cluster)(nil)

func (c *Cluster) ensureConfigStream(ctx context.Context) (jetstream.Stream, error) {
	st, err := c.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        configStreamName,
		Description: "caddy-webhooker: every configuration change made through the API, in order",
		Subjects:    []string{configSubject},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.opts.replicas(),
		MaxMsgSize:  maxConfigChange,
		// A publish tried again after its answer was lost is answered
		// with the first one's place, not as a conflict.
		Duplicates: 2 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("configuration stream: %w", err)
	}
	return st, nil
}

func (c *Cluster) configLog() (jetstream.Stream, error) {
	select {
	case <-c.ready:
		return *c.config.Load(), nil
	default:
		return nil, ErrNotReady
	}
}

// Head is the place of the last change in the configuration log.
func (c *Cluster) Head(ctx context.Context) (uint64, error) {
	st, err := c.configLog()
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, configTimeout)
	defer cancel()
	info, err := st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("configuration log: %w", err)
	}
	return info.State.LastSeq, nil
}

// Append appends change to the configuration log provided that its last
// change is at after: storage.ErrConfigConflict when another was appended
// since.
func (c *Cluster) Append(ctx context.Context, change []byte, after uint64) (uint64, error) {
	if _, err := c.configLog(); err != nil {
		return 0, err
	}
	if len(change) > maxConfigChange {
		return 0, fmt.Errorf("a configuration change of %d bytes is over the log's limit of %d", len(change), maxConfigChange)
	}
	ctx, cancel := context.WithTimeout(ctx, configTimeout)
	defer cancel()
	ack, err := c.js.Publish(ctx, configSubject, change,
		jetstream.WithExpectLastSequence(after), jetstream.WithMsgID(uuid.NewString()))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return 0, fmt.Errorf("%w: %v", storage.ErrConfigConflict, err)
	}
	if err != nil {
		return 0, fmt.Errorf("configuration log: %w", err)
	}
	c.configChanges.Add(1)
	return ack.Sequence, nil
}

// ConfigApplier applies the change at place seq of the configuration log.
type ConfigApplier func(ctx context.Context, seq uint64, change []byte) error

// FollowConfig applies the configuration log in its order, from the
// change after applied() on, until Close: apply is called once per
// change, and a change it fails is tried again (the log has no gaps). It
// starts once the log exists.
func (c *Cluster) FollowConfig(applied func() uint64, apply ConfigApplier) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		select {
		case <-c.ready:
		case <-c.ctx.Done():
			return
		}
		wait := 250 * time.Millisecond
		for c.ctx.Err() == nil {
			err := c.followConfig(applied, apply)
			if c.ctx.Err() != nil {
				return
			}
			c.log.Warn("following the configuration log: starting again", zap.Error(err))
			select {
			case <-c.ctx.Done():
			case <-time.After(wait):
			}
			wait = min(2*wait, 5*time.Second)
		}
	}()
}

// followConfig reads the log from after applied() until an error.
func (c *Cluster) followConfig(applied func() uint64, apply ConfigApplier) error {
	st, err := c.configLog()
	if err != nil {
		return err
	}
	cons, err := st.OrderedConsumer(c.ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   applied() + 1,
	})
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	stop := context.AfterFunc(c.ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		msg, err := it.Next()
		if err != nil {
			return err
		}
		meta, err := msg.Metadata()
		if err != nil {
			return err
		}
		seq := meta.Sequence.Stream
		if seq <= applied() {
			continue
		}
		if err := c.applyConfig(seq, msg.Data(), apply); err != nil {
			return err
		}
	}
}

// applyConfig applies one change, trying again until it is applied or
// the cluster closes: a later change cannot be applied before it.
func (c *Cluster) applyConfig(seq uint64, change []byte, apply ConfigApplier) error {
	wait := 250 * time.Millisecond
	for {
		err := apply(c.ctx, seq, change)
		if err == nil {
			return nil
		}
		if c.ctx.Err() != nil {
			return c.ctx.Err()
		}
		c.log.Error("applying a configuration change: trying again; the changes after it wait",
			zap.Uint64("seq", seq), zap.Duration("in", wait), zap.Error(err))
		select {
		case <-c.ctx.Done():
			return c.ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}
