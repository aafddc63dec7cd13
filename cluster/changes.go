package cluster

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// The event-log page's live updates in cluster mode: each node tells the
// others which webhooks changed here (an event applied, a delivery
// attempted), so that a page open on any node hears of every node's.

const (
	// changedSubject carries one node's changed webhook ids, a line each.
	changedSubject = "webhooker.changed"
	// headerNode names the node that sent a message.
	headerNode = "Webhooker-Node"
	// changedEvery: a node sends at most one message of changes in this
	// time; ids changed meanwhile wait for the next, once each.
	changedEvery = 250 * time.Millisecond
	// maxChangedBatch bounds the ids of one message.
	maxChangedBatch = 4096
)

// changeRelay gathers the ids changed here and sends them in batches.
type changeRelay struct {
	mu      sync.Mutex
	pending map[string]struct{}
	wake    chan struct{}
}

// Changed tells the other nodes, soon, that webhook id changed here. It
// never blocks; an id changed many times before the next batch is sent
// once.
func (c *Cluster) Changed(id string) {
	r := &c.changes
	r.mu.Lock()
	if len(r.pending) < maxChangedBatch {
		r.pending[id] = struct{}{}
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// HearChanges calls heard with each batch of webhook ids another node
// changed, from its own goroutine, and starts sending this node's. Call
// it once.
func (c *Cluster) HearChanges(heard func(ids []string)) error {
	sub, err := c.nc.Subscribe(changedSubject, func(m *nats.Msg) {
		if m.Header.Get(headerNode) == c.opts.Node {
			return
		}
		heard(splitIDs(m.Data))
	})
	if err != nil {
		return err
	}
	c.changedSub = sub
	c.wg.Add(1)
	go c.sendChanges()
	return nil
}

// sendChanges sends the ids changed here, at most one message per
// changedEvery, until Close.
func (c *Cluster) sendChanges() {
	defer c.wg.Done()
	r := &c.changes
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-r.wake:
		}
		r.mu.Lock()
		var data []byte
		for id := range r.pending {
			data = append(append(data, id...), '\n')
		}
		clear(r.pending)
		r.mu.Unlock()
		if len(data) > 0 {
			m := nats.NewMsg(changedSubject)
			m.Header.Set(headerNode, c.opts.Node)
			m.Data = data
			_ = c.nc.PublishMsg(m) // a page that misses one refetches on the next
		}
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(changedEvery):
		}
	}
}

func splitIDs(data []byte) []string {
	var ids []string
	for len(data) > 0 {
		i := 0
		for i < len(data) && data[i] != '\n' {
			i++
		}
		if i > 0 && i <= 64 {
			ids = append(ids, string(data[:i]))
		}
		if i == len(data) {
			break
		}
		data = data[i+1:]
	}
	return ids
}
