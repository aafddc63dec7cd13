package cluster

import (
	"context"
	"sync"
	"time"
)

// A node whose process stood still (SIGSTOP, a paused VM, a swap storm)
// longer than its partitions' pinnedTTL lost their pins meanwhile: the
// stream pinned them to other nodes, and hands those nodes, after ackWait,
// every message it had handed out to this one and not heard back of. The
// messages this node had received and not applied yet (up to pullBatch a
// partition, in its client and its socket) reach its handler when it goes
// on; applied here too, each would be delivered twice. The stall guard
// notices that the process stood still and, before the next message of
// each partition is applied, asks the stream whose the partition's pin is
// now: a message received under a pin that is no longer this node's is
// left alone, neither applied nor acknowledged, and the stream hands it to
// the partition's owner in its time. Nothing is lost by it: a message left
// alone is always handed out again.
//
// What it cannot spare: deliveries this node had begun before it stood
// still (their messages held, see owner.held) are made again by the next
// owner if the stall outlasted ackWait.

const (
	// stallBeat is how often the guard notes that the process runs.
	stallBeat = time.Second
	// stallAfter is the gap between beats taken for a stall: far below
	// what loses a pin (pinnedTTL less a pull's pullExpiry), far above a
	// pause of the Go runtime.
	stallAfter = 5 * time.Second
	// pinAskEvery bounds how often the guard asks the stream about one
	// partition while it cannot answer.
	pinAskEvery = time.Second
)

// pinnedFunc says which client a partition is pinned to now.
type pinnedFunc func(ctx context.Context, p int) (string, error)

type stallGuard struct {
	now    func() time.Time
	pinned pinnedFunc

	mu   sync.Mutex
	last time.Time // the last beat (or message) that saw the process run
	// unsure: the partitions whose pin the stream has not been asked about
	// since the last stall; asked: when it was asked last.
	unsure [Partitions]bool
	asked  [Partitions]time.Time
	// lost is each partition's pin that, asked about after a stall, was
	// no longer this node's.
	lost [Partitions]string
	// stalls counts the stalls noticed.
	stalls uint64
}

func newStallGuard(now func() time.Time, pinned pinnedFunc) *stallGuard {
	return &stallGuard{now: now, pinned: pinned, last: now()}
}

// beat notes that the process runs; a gap past stallAfter since the last
// makes every partition's pin unsure. Under g.mu.
func (g *stallGuard) beatLocked() {
	now := g.now()
	if now.Sub(g.last) > stallAfter {
		g.stalls++
		for p := range g.unsure {
			g.unsure[p] = true
		}
	}
	g.last = now
}

func (g *stallGuard) beat() {
	g.mu.Lock()
	g.beatLocked()
	g.mu.Unlock()
}

// stallCount is how many stalls the guard noticed.
func (g *stallGuard) stallCount() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stalls
}

// begin counts from now: the time before consuming (a node waiting for
// the stream's quorum) is no stall.
func (g *stallGuard) begin() {
	g.mu.Lock()
	g.last = g.now()
	g.mu.Unlock()
}

// run beats every stallBeat until ctx ends.
func (g *stallGuard) run(ctx context.Context) {
	t := time.NewTicker(stallBeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.beat()
		}
	}
}

// stale says whether a message of partition p received under pin must be
// left alone: the pin was lost in a stall, or it may have been and the
// stream cannot say. The handler calls it before applying, which also
// notices a stall that the beat has not yet (both go on at once after one).
func (g *stallGuard) stale(ctx context.Context, p int, pin string) bool {
	if pin == "" {
		return false
	}
	g.mu.Lock()
	g.beatLocked()
	if pin == g.lost[p] {
		g.mu.Unlock()
		return true
	}
	if !g.unsure[p] {
		g.mu.Unlock()
		return false
	}
	if now := g.now(); now.Sub(g.asked[p]) < pinAskEvery {
		g.mu.Unlock()
		return true // asked a moment ago, with no answer: still unsure
	}
	g.asked[p] = g.now()
	g.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	current, err := g.pinned(ctx, p)
	cancel()
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		return true // left alone, and asked again for the next one
	}
	g.unsure[p] = false
	if current != pin {
		g.lost[p] = pin
		return true
	}
	return false
}
