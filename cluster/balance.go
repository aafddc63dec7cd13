package cluster

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// JetStream pins a partition to whichever node asks first, and keeps it
// there while that node asks: the node started first takes every
// partition, and a node that rejoins would take none until another is
// lost. So each node, when it counts its partitions (every ackWait/3),
// releases those over its share (the partitions over the nodes routed,
// rounded up), a few at a time: it stops asking for the partition's
// messages, has it unpinned, and asks again after releasePause, by when a
// node with fewer has taken it.

const (
	// releasePause is how long a released partition is not asked for
	// here: long enough for the other nodes' next requests (pullExpiry).
	releasePause = 3 * pullExpiry
	// maxReleasePerRound bounds the partitions released at each count, so
	// that the cluster settles rather than swings.
	maxReleasePerRound = 2
)

// rebalance releases the partitions this node holds over its share. With
// `nats <url>` the number of nodes is not known here: nothing is released.
func (o *owner) rebalance() {
	if o.c.srv == nil {
		return
	}
	nodes := o.c.routedNodes() + 1
	share := (Partitions + nodes - 1) / nodes
	var owned []int
	for p := range Partitions {
		if o.ownedP[p].Load() {
			owned = append(owned, p)
		}
	}
	for i := 0; i < len(owned)-share && i < maxReleasePerRound; i++ {
		o.release(owned[len(owned)-1-i], len(owned), share)
	}
}

// release stops asking for partition p's messages, has it unpinned, and
// asks again after releasePause. The messages this node applied and
// awaits the deliveries of stay its own, acknowledged when done.
func (o *owner) release(p, owned, share int) {
	o.consMu.Lock()
	cc := o.consuming[p]
	o.consuming[p] = nil
	o.consMu.Unlock()
	if cc == nil {
		return
	}
	cc.Stop()
	o.ownedP[p].Store(false)
	if st := o.c.stream.Load(); st != nil {
		ctx, cancel := context.WithTimeout(o.c.ctx, 2*time.Second)
		if err := (*st).UnpinConsumer(ctx, consumerOf(p), priorityGroup); err != nil && o.c.ctx.Err() == nil {
			o.log.Debug("unpinning a released partition: it moves when its pin expires", zap.Int("partition", p), zap.Error(err))
		}
		cancel()
	}
	o.released.Add(1)
	o.log.Info("released a partition for a node with fewer", zap.Int("partition", p),
		zap.Int("owned", owned), zap.Int("share", share))
	time.AfterFunc(releasePause, func() { o.consume(p) })
}
