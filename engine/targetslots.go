package engine

import "sync"

// DefaultMaxParkedPerTarget bounds the deliveries parked behind one target's
// slots. Beyond it a delivery is let go (it stays pending in its event DB)
// and its webhook is scanned once the target's queue has drained.
const DefaultMaxParkedPerTarget = 10000

// maxParkedTaskBytes bounds the memory of the tasks parked whole, over all
// targets. A delivery parked whole keeps what its attempt needs (the event's
// metadata and inline body), so that its turn costs no read of its event DB;
// at full speed nearly every delivery to a busy target is parked, and reading
// each back (the delivery, its event, its body: three queries) cost more CPU
// than its attempt. Beyond the bound a delivery is parked by its ids only,
// as before, and read back when its turn comes.
const maxParkedTaskBytes = 32 << 20

// parkedTaskOverhead is what a parked task costs besides its body and
// headers: the task itself and its strings, roughly.
const parkedTaskOverhead = 512

// targetSlots bounds the http attempts in flight per target, so that one slow
// or tarpit target never holds more than its share of the workers. A worker
// that takes a delivery whose target is at its limit does not wait: it parks
// the delivery (ids only: no body, ownership kept) in the target's FIFO and
// takes other work. When an attempt of that target ends, its slot passes to
// the first parked delivery, which keeps the slot while it is handed on, so
// that fresh work to the same target cannot overtake it.
type targetSlots struct {
	max       int // attempts in flight per target
	parkLimit int // parked deliveries per target
	taskBytes int // bound of parkedBytes (maxParkedTaskBytes)

	mu      sync.Mutex
	targets map[string]*targetQueue // target id -> its slots and FIFO
	// parkedBytes is the memory of the tasks parked whole (taskSize).
	parkedBytes int
}

type targetQueue struct {
	inFlight int // slots taken: attempts running, and slots handed on
	// max is the target's slots, as its last acquire had them: a lowered
	// max_in_flight takes effect as attempts end (done).
	max    int
	parked []deliveryRef
	// overflowed are the webhooks of deliveries let go because the FIFO was
	// full: they are scanned once it drains, so that nothing waits for ever.
	overflowed map[string]bool
}

func newTargetSlots(max, parkLimit int) *targetSlots {
	return &targetSlots{max: max, parkLimit: parkLimit, taskBytes: maxParkedTaskBytes,
		targets: make(map[string]*targetQueue)}
}

// taskSize is roughly the memory a parked task holds.
func taskSize(t *Task) int {
	n := parkedTaskOverhead + len(t.Event.Path) + len(t.Event.Query)
	if t.Body != nil {
		n += len(*t.Body)
	}
	for k, vs := range t.Event.Headers {
		n += len(k)
		for _, v := range vs {
			n += len(v)
		}
	}
	return n
}

// parkOutcome says what became of a delivery that found no free slot.
type parkOutcome int

const (
	slotTaken  parkOutcome = iota // the caller holds a slot: attempt now
	parked                        // queued behind the target's attempts
	overflowed                    // FIFO full: let go, its webhook to be scanned
)

// acquire takes a slot of targetID for ref, or parks ref in the target's
// FIFO, or, when that is full, tells the caller to let the delivery go. A
// ref that carries its task is parked whole while the tasks parked whole
// stay within their bound, else by its ids only.
//
// limit is the target's own max_in_flight, 0 for the engine's default.
func (s *targetSlots) acquire(targetID string, limit int, ref deliveryRef) parkOutcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.targets[targetID]
	if q == nil {
		q = &targetQueue{}
		s.targets[targetID] = q
	}
	q.max = s.max
	if limit > 0 {
		q.max = limit
	}
	if q.inFlight < q.max {
		q.inFlight++
		return slotTaken
	}
	if len(q.parked) >= s.parkLimit {
		if q.overflowed == nil {
			q.overflowed = make(map[string]bool)
		}
		q.overflowed[ref.webhookID] = true
		return overflowed
	}
	ref.slot = ""
	ref.taskBytes = 0
	if ref.task != nil {
		if n := taskSize(ref.task); s.parkedBytes+n <= s.taskBytes {
			ref.taskBytes = n
			s.parkedBytes += n
		} else {
			ref.task, ref.attempts = nil, 0 // read back when its turn comes
		}
	}
	q.parked = append(q.parked, ref)
	return parked
}

// done ends the use of one slot of targetID. When a delivery is parked, the
// slot passes to it: next is that delivery, carrying the slot. scan lists the
// webhooks to scan now that the FIFO has drained (those whose deliveries
// overflowed it).
func (s *targetSlots) done(targetID string) (next deliveryRef, ok bool, scan []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.targets[targetID]
	if q == nil {
		return deliveryRef{}, false, nil // a stop's late release: nothing to do
	}
	if len(q.parked) > 0 && (q.inFlight <= q.max || q.max == 0) {
		next, ok = q.parked[0], true
		q.parked[0] = deliveryRef{}
		q.parked = q.parked[1:]
		next.slot = targetID
		s.parkedBytes -= next.taskBytes
		next.taskBytes = 0
	} else {
		q.inFlight--
	}
	if len(q.parked) == 0 {
		q.parked = nil // let the backing array go
		for id := range q.overflowed {
			scan = append(scan, id)
		}
		q.overflowed = nil
		if q.inFlight == 0 {
			delete(s.targets, targetID)
		}
	}
	return next, ok, scan
}

// parkedCount is the number of deliveries parked behind all targets.
func (s *targetSlots) parkedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, q := range s.targets {
		n += len(q.parked)
	}
	return n
}

// inFlight is the number of slots of targetID taken.
func (s *targetSlots) inFlight(targetID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.targets[targetID]; q != nil {
		return q.inFlight
	}
	return 0
}
