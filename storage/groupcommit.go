package storage

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
)

// Group commit: concurrent writes to one event DB (ingests, and the engine's
// records of attempts) share a transaction, so that one fsync makes many
// durable. There is no background goroutine:
// the first caller to find no commit in progress becomes the leader, commits
// everything queued so far (itself first), then hands leadership to the first
// request that queued while it was committing. Requests queue while an fsync
// is in flight, which is exactly when batching pays.

const (
	// maxBatchWrites and maxBatchBytes bound one transaction, so that one
	// huge batch does not hold the writer for long.
	maxBatchWrites = 512
	maxBatchBytes  = 8 << 20
)

// commitRequest is one write to run in a shared transaction. size (bytes)
// bounds how much one transaction carries.
type commitRequest struct {
	write func(*writeTx) error
	size  int
	// crashSafe writes need to survive a crash of the process, not of the
	// machine (in-flight marks): a batch of only such writes is committed
	// without an fsync (see commitCrashSafe).
	crashSafe bool
	// entry is the event an intake write carries (intake.go), whose
	// commit function writes it instead of calling write.
	entry *intakeEntry
	// ctx, when set, ends the wait of a request still queued: it is taken
	// out of the queue and never written, and submit returns ctx's error.
	// Once taken into a transaction (or handed leadership) it waits for the
	// outcome, so that ctx's error always means the write was not made.
	ctx   context.Context
	taken bool  // under groupCommitter.mu
	err   error // the write's own error, set by the committer
	done  chan commitSignal
}

// commitSignal tells a queued request either the outcome of the transaction
// that carried it, or that it is now the leader and must commit the queue.
type commitSignal struct {
	err  error
	lead bool
}

type groupCommitter struct {
	commit func(batch []*commitRequest) error
	// verify, when set, runs once after each transaction that committed; its
	// error fails every write of the batch. It is how a commit into a file
	// that was removed behind our back is never reported as durable.
	verify func() error

	mu      sync.Mutex
	queue   []*commitRequest
	leading bool

	transactions atomic.Int64
}

// submit queues r and returns once the transaction carrying it has committed
// or failed. It never returns success before the commit.
func (g *groupCommitter) submit(r *commitRequest) error {
	if r.ctx != nil && r.ctx.Err() != nil {
		return r.ctx.Err()
	}
	r.done = make(chan commitSignal, 1)
	g.mu.Lock()
	g.queue = append(g.queue, r)
	if g.leading {
		g.mu.Unlock()
		sig, err := g.wait(r)
		if err != nil {
			return err
		}
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
	if err == nil && g.verify != nil {
		err = g.verify()
	}
	g.transactions.Add(1)

	g.mu.Lock()
	if len(g.queue) > 0 {
		next := g.queue[0]
		next.taken = true // it must lead now: it can no longer withdraw
		g.mu.Unlock()
		next.done <- commitSignal{lead: true}
	} else {
		g.leading = false
		g.mu.Unlock()
	}
	outcome := func(r *commitRequest) error {
		if err != nil {
			return err // the transaction failed: nothing of the batch is durable
		}
		return r.err
	}
	for _, follower := range batch[1:] {
		follower.done <- commitSignal{err: outcome(follower)}
	}
	return outcome(batch[0])
}

// wait waits for the signal of a queued request, or for its ctx to end
// while it is still queued: then it withdraws, and returns ctx's error.
func (g *groupCommitter) wait(r *commitRequest) (commitSignal, error) {
	var ended <-chan struct{}
	if r.ctx != nil {
		ended = r.ctx.Done()
	}
	select {
	case sig := <-r.done:
		return sig, nil
	case <-ended:
	}
	g.mu.Lock()
	if !r.taken {
		g.queue = slices.DeleteFunc(g.queue, func(q *commitRequest) bool { return q == r })
		g.mu.Unlock()
		return commitSignal{}, r.ctx.Err()
	}
	g.mu.Unlock()
	return <-r.done, nil // in a transaction already: its outcome is the answer
}

// takeBatch removes the head of the queue, up to the batch bounds (always at
// least one request), and returns it.
func takeBatch(queue *[]*commitRequest) []*commitRequest {
	q := *queue
	n, size := 0, 0
	for n < len(q) && n < maxBatchWrites {
		size += q[n].size
		n++
		if size >= maxBatchBytes {
			break
		}
	}
	batch := make([]*commitRequest, n)
	copy(batch, q[:n])
	for _, r := range batch {
		r.taken = true
	}
	rest := q[n:]
	if len(rest) == 0 {
		clear(q) // drop references to bodies now owned by batch
		*queue = q[:0]
	} else {
		*queue = append([]*commitRequest(nil), rest...)
	}
	return batch
}
