package storage

import (
	"sync"
	"sync/atomic"
)

// Group commit: concurrent ingests to one event DB share a transaction, so
// that one fsync acknowledges many events. There is no background goroutine:
// the first caller to find no commit in progress becomes the leader, commits
// everything queued so far (itself first), then hands leadership to the first
// request that queued while it was committing. Requests queue while an fsync
// is in flight, which is exactly when batching pays.

const (
	// maxBatchEvents and maxBatchBytes bound one transaction, so that one
	// huge batch does not hold the writer for long.
	maxBatchEvents = 512
	maxBatchBytes  = 8 << 20
)

type commitRequest struct {
	event      *Event
	deliveries []Delivery
	done       chan commitSignal
}

// commitSignal tells a queued request either the outcome of the transaction
// that carried it, or that it is now the leader and must commit the queue.
type commitSignal struct {
	err  error
	lead bool
}

type groupCommitter struct {
	commit func(batch []*commitRequest) error

	mu      sync.Mutex
	queue   []*commitRequest
	leading bool

	transactions atomic.Int64
}

// submit queues r and returns once the transaction carrying it has committed
// or failed. It never returns success before the commit.
func (g *groupCommitter) submit(r *commitRequest) error {
	r.done = make(chan commitSignal, 1)
	g.mu.Lock()
	g.queue = append(g.queue, r)
	if g.leading {
		g.mu.Unlock()
		sig := <-r.done
		if !sig.lead {
			return sig.err
		}
		// Handed leadership: r is now at the head of the queue.
	} else {
		g.leading = true
		g.mu.Unlock()
	}

	g.mu.Lock()
	batch := takeBatch(&g.queue)
	g.mu.Unlock()

	err := g.commit(batch)
	g.transactions.Add(1)

	g.mu.Lock()
	if len(g.queue) > 0 {
		next := g.queue[0]
		g.mu.Unlock()
		next.done <- commitSignal{lead: true}
	} else {
		g.leading = false
		g.mu.Unlock()
	}
	for _, follower := range batch[1:] {
		follower.done <- commitSignal{err: err}
	}
	return err
}

// takeBatch removes the head of the queue, up to the batch bounds (always at
// least one request), and returns it.
func takeBatch(queue *[]*commitRequest) []*commitRequest {
	q := *queue
	n, size := 0, 0
	for n < len(q) && n < maxBatchEvents {
		size += len(q[n].event.Body)
		n++
		if size >= maxBatchBytes {
			break
		}
	}
	batch := make([]*commitRequest, n)
	copy(batch, q[:n])
	rest := q[n:]
	if len(rest) == 0 {
		clear(q) // drop references to bodies now owned by batch
		*queue = q[:0]
	} else {
		*queue = append([]*commitRequest(nil), rest...)
	}
	return batch
}
