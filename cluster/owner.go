package cluster

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Applier is what the owner of a partition does with its messages: the
// data directory, which stores events and hands their deliveries to its
// engine.
type Applier interface {
	// Apply stores m's event on this node, once: a message handed out
	// again finds it stored. It returns the ids of the event's
	// deliveries not yet final, and start (nil when nothing is to start),
	// which hands them to the delivery engine: the owner calls it once it
	// awaits their outcomes, so that none comes unawaited. An error
	// wrapping ErrNotHere leaves the message for later.
	Apply(ctx context.Context, m *Message) (open []string, start func(), err error)
	// Final says which of deliveryIDs of webhookID are final now, for a
	// message whose event was stored before (its outcomes may have come
	// before they were awaited).
	Final(ctx context.Context, webhookID string, deliveryIDs []string) ([]string, error)
	// Serial says whether m must be applied in the stream's order, before
	// the partition's next message (ordered delivery).
	Serial(m *Message) bool
}

// ErrNotHere: the message's webhook is not in this node's configuration
// (yet): every node must declare the same webhooks. The message is handed
// out again later, never dropped.
var ErrNotHere = errors.New("webhook not configured on this node")

const (
	// ackWait is how long a message handed out stays with its node
	// without word from it: the owner says "in progress" every third of
	// it while its deliveries go on, so a lost node's messages are handed
	// out again after at most this.
	ackWait = 30 * time.Second
	// pinnedTTL is how long a partition stays pinned to a node that
	// stopped asking for messages (lost) before another takes it.
	pinnedTTL = 15 * time.Second
	// pullExpiry keeps a pinned node's requests fresh well within
	// pinnedTTL.
	pullExpiry = 5 * time.Second
	// maxAckPending bounds a partition's messages handed out and not
	// finished: past it the partition waits, its events safe in the
	// stream.
	maxAckPending = 20000
	// pullBatch is how many messages a node asks for at once: what it had
	// received and not yet applied when it releases a partition is handed
	// out again after ackWait.
	pullBatch = 64
	// applyConcurrency bounds a partition's messages being applied at once.
	applyConcurrency = 32
	// retryLater is how long a message that could not be applied waits.
	retryLater    = 5 * time.Second
	priorityGroup = "owner"
)

func consumerConfig(p int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        consumerOf(p),
		Description:    "caddy-webhooker: the owner of one partition of the webhooks",
		FilterSubject:  subjectOf(p),
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        ackWait,
		MaxDeliver:     -1,
		MaxAckPending:  maxAckPending,
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PriorityGroups: []string{priorityGroup},
		PinnedTTL:      pinnedTTL,
		// The consumers' state (what was handed out, what acknowledged) is
		// replicated like the stream, but kept in memory: written to
		// disk, each delivery and each ack would cost a write on every
		// node. Should all the nodes stop at once, it is lost, and the
		// stream, which keeps every message not acknowledged, hands
		// those out again: duplicates, never a loss.
		MemoryStorage: true,
	}
}

// owner consumes every partition with the others nodes; JetStream pins each
// partition to one of them at a time. It awaits the final outcome of each
// message's deliveries and acknowledges the message then: until then the
// stream holds it, for the next owner should this node be lost.
type owner struct {
	c     *Cluster
	apply Applier
	log   *zap.Logger

	mu         sync.Mutex
	byDelivery map[string]*held
	held       map[*held]struct{}

	// consMu guards what is consumed: each partition's consumer, its
	// bound on applies at once, and its consumption (nil while released,
	// see balance.go).
	consMu    sync.Mutex
	cons      [Partitions]jetstream.Consumer
	sems      [Partitions]chan struct{}
	consuming [Partitions]jetstream.ConsumeContext
	pins      [Partitions]atomic.Pointer[string] // pin id of the last message
	// ownedP says which partitions were pinned here at the last count.
	ownedP   [Partitions]atomic.Bool
	owned    atomic.Int64
	released atomic.Uint64
	wg       sync.WaitGroup
	stopped  chan struct{}

	// guard leaves alone the messages received under a pin lost while
	// the process stood still (stall.go).
	guard *stallGuard

	applied, repeated, takenOver, acked, retried, malformed, stale atomic.Uint64
}

// held is a message whose deliveries are not all final.
type held struct {
	msg  jetstream.Msg
	open map[string]struct{}
}

func newOwner(c *Cluster, apply Applier) *owner {
	o := &owner{
		c: c, apply: apply, log: c.log.Named("owner"),
		byDelivery: map[string]*held{}, held: map[*held]struct{}{},
		stopped: make(chan struct{}),
	}
	o.guard = newStallGuard(time.Now, o.pinnedNow)
	return o
}

// start consumes every partition, and keeps the messages in progress
// while their deliveries go on.
func (o *owner) start() {
	if o.c.ctx.Err() != nil {
		return
	}
	o.guard.begin()
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		o.guard.run(o.c.ctx)
	}()
	st := o.c.stream.Load()
	for p := range Partitions {
		cons, err := (*st).Consumer(o.c.ctx, consumerOf(p))
		if err != nil {
			o.log.Error("consumer of a partition", zap.Int("partition", p), zap.Error(err))
			continue
		}
		o.consMu.Lock()
		o.cons[p], o.sems[p] = cons, make(chan struct{}, applyConcurrency)
		o.consMu.Unlock()
		o.consume(p)
	}
	o.wg.Add(1)
	go o.keepInProgress()
}

// consume asks for partition p's messages (JetStream hands them out while
// p is pinned here), unless it is already or the owner stops.
func (o *owner) consume(p int) {
	o.consMu.Lock()
	defer o.consMu.Unlock()
	if o.c.ctx.Err() != nil || o.consuming[p] != nil || o.cons[p] == nil {
		return
	}
	sem := o.sems[p]
	cc, err := o.cons[p].Consume(func(msg jetstream.Msg) { o.handle(p, msg, sem) },
		jetstream.PullPriorityGroup(priorityGroup), jetstream.PullExpiry(pullExpiry),
		jetstream.PullMaxMessages(pullBatch),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrPinIDMismatch) && !errors.Is(err, jetstream.ErrNoHeartbeat) {
				o.log.Debug("consuming a partition", zap.Int("partition", p), zap.Error(err))
			}
		}))
	if err != nil {
		o.log.Error("consuming a partition", zap.Int("partition", p), zap.Error(err))
		return
	}
	o.consuming[p] = cc
}

// handle applies one message: inline for a serial webhook, otherwise on a
// goroutine of its partition's bounded few.
func (o *owner) handle(p int, msg jetstream.Msg, sem chan struct{}) {
	pin := msg.Headers().Get("Nats-Pin-Id")
	if o.guard.stale(o.c.ctx, p, pin) {
		o.stale.Add(1)
		return // handed out again by the stream, to the partition's owner
	}
	if pin != "" {
		o.pins[p].Store(&pin)
	}
	m, err := decode(msg.Data())
	if err != nil {
		o.malformed.Add(1)
		o.log.Error("a message on the intake stream is not an event: dropped", zap.Int("partition", p), zap.Error(err))
		_ = msg.Term()
		return
	}
	if md, err := msg.Metadata(); err == nil && md.NumDelivered > 1 {
		m.Redelivered = true
	}
	if o.apply.Serial(m) {
		o.applyOne(msg, m)
		return
	}
	sem <- struct{}{}
	o.wg.Add(1)
	go func() {
		defer func() { <-sem; o.wg.Done() }()
		o.applyOne(msg, m)
	}()
}

func (o *owner) applyOne(msg jetstream.Msg, m *Message) {
	open, start, err := o.apply.Apply(o.c.ctx, m)
	if err != nil {
		o.retried.Add(1)
		if errors.Is(err, ErrNotHere) {
			o.log.Error("an event for a webhook this node does not have: declare the same webhooks on every node; kept in the stream, tried again",
				zap.String("webhook_id", m.WebhookID), zap.String("event_id", m.Event.ID))
			_ = msg.NakWithDelay(ackWait)
		} else if o.c.ctx.Err() == nil {
			o.log.Error("applying an event from the intake stream: kept there, tried again",
				zap.String("webhook_id", m.WebhookID), zap.String("event_id", m.Event.ID), zap.Error(err))
			_ = msg.NakWithDelay(retryLater)
		}
		return
	}
	switch {
	case start != nil:
		o.applied.Add(1)
		if m.Redelivered {
			// Handed out before, to a node lost since: that node may have
			// delivered some of it (at least once).
			o.takenOver.Add(1)
		}
	case m.Redelivered:
		o.repeated.Add(1)
	}
	if len(open) == 0 {
		o.ack(msg)
		if start != nil {
			start()
		}
		return
	}
	h := &held{msg: msg, open: make(map[string]struct{}, len(open))}
	o.mu.Lock()
	for _, id := range open {
		h.open[id] = struct{}{}
		if h0 := o.byDelivery[id]; h0 != nil {
			// Held already: the same message, handed out again (its ack
			// wait ran out while this node stood still). The newest
			// hand-out is the one to acknowledge; the older is let go,
			// or it would be held, and kept in progress, for ever.
			delete(h0.open, id)
			if len(h0.open) == 0 {
				delete(o.held, h0)
			}
		}
		o.byDelivery[id] = h
	}
	o.held[h] = struct{}{}
	o.mu.Unlock()
	if start != nil {
		start()
		return
	}
	// Stored before: its deliveries are already with the engine, and some
	// may have ended before they were awaited here.
	final, err := o.apply.Final(o.c.ctx, m.WebhookID, open)
	if err != nil {
		o.log.Warn("reading the deliveries of an event handed out again", zap.String("event_id", m.Event.ID), zap.Error(err))
	}
	for _, id := range final {
		o.Done(id)
	}
}

// Done tells that delivery id is final (delivered, failed for good or
// cancelled): the message of its event is acknowledged once all of its
// deliveries are. It does not block (called on the engine's goroutines).
func (o *owner) Done(id string) {
	o.mu.Lock()
	h, ok := o.byDelivery[id]
	if !ok {
		o.mu.Unlock()
		return
	}
	delete(o.byDelivery, id)
	delete(h.open, id)
	last := len(h.open) == 0
	if last {
		delete(o.held, h)
	}
	o.mu.Unlock()
	if last {
		o.ack(h.msg)
	}
}

func (o *owner) ack(msg jetstream.Msg) {
	if err := msg.Ack(); err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) {
			// Stopping: the attempts finishing in the grace period are
			// recorded here, and handed out again from the stream.
			o.log.Debug("a finished event not acknowledged: the node is stopping", zap.Error(err))
			return
		}
		o.log.Warn("acknowledging a finished event to the stream: it will be handed out again", zap.Error(err))
		return
	}
	o.acked.Add(1)
}

// keepInProgress tells the stream, every third of ackWait, that the held
// messages are still being worked on, and counts the partitions pinned here.
func (o *owner) keepInProgress() {
	defer o.wg.Done()
	t := time.NewTicker(ackWait / 3)
	defer t.Stop()
	for {
		select {
		case <-o.c.ctx.Done():
			return
		case <-t.C:
		}
		o.mu.Lock()
		msgs := make([]jetstream.Msg, 0, len(o.held))
		for h := range o.held {
			msgs = append(msgs, h.msg)
		}
		o.mu.Unlock()
		for _, m := range msgs {
			_ = m.InProgress()
		}
		o.countOwned()
		o.rebalance()
	}
}

// countOwned counts the partitions whose pinned client is this node's.
func (o *owner) countOwned() {
	if o.c.stream.Load() == nil {
		return
	}
	var n int64
	for p := range Partitions {
		pin := o.pins[p].Load()
		mine := false
		if pin != nil {
			ctx, cancel := context.WithTimeout(o.c.ctx, 2*time.Second)
			now, err := o.pinnedNow(ctx, p)
			cancel()
			if err != nil {
				// Unknown: as it was.
				mine = o.ownedP[p].Load()
			} else {
				mine = now == *pin
			}
		}
		o.ownedP[p].Store(mine)
		if mine {
			n++
		}
	}
	o.owned.Store(n)
}

// pinnedNow asks the stream which client partition p is pinned to ("" for
// none).
func (o *owner) pinnedNow(ctx context.Context, p int) (string, error) {
	st := o.c.stream.Load()
	if st == nil {
		return "", errors.New("the intake stream is not set up")
	}
	info, err := (*st).Consumer(ctx, consumerOf(p))
	if err != nil {
		return "", err
	}
	for _, g := range info.CachedInfo().PriorityGroups {
		if g.Group == priorityGroup {
			return g.PinnedClientID, nil
		}
	}
	return "", nil
}

// stop stops consuming and waits for the applies under way. What is held
// stays unacknowledged: the stream hands it out again to the next owner.
func (o *owner) stop() {
	o.consMu.Lock()
	ccs := o.consuming
	o.consuming = [Partitions]jetstream.ConsumeContext{}
	o.consMu.Unlock()
	for _, cc := range ccs {
		if cc != nil {
			cc.Stop()
		}
	}
	o.wg.Wait()
}
