package storage

// Spill: past IntakeOptions.Memory, the events of the webhooks the applier
// will reach last are dropped from memory. intake.db holds each of them
// durably already, so only its seq and size stay (an intakeRef), and it is
// read back when its webhook is applied, as a replayed entry is
// (intakereplay.go, load). Ingest then waits only on IntakeOptions.Size,
// the bytes of events intake.db holds, not on memory.
//
// Why this matters: an applier that must open a cold event DB for each
// webhook it applies (about 4 ms of CPU each, past max_open_event_dbs)
// keeps up with load spread over many webhooks only if each open takes
// many events. With the backlog bounded by memory it could not grow to
// that size, and ingest waited for the applier instead (wrk, 60 s over
// 1,000 webhooks: 2,634 req/s at 64 MiB, 4,322 at 256 MiB). On disk it can.
//
// Which to spill: the applier takes webhooks in the order their first
// waiting entry arrived (Intake.ready), so the end of that list waits
// longest, and its memory would be held longest for nothing; the head
// is applied next and would only be read back at once. A webhook's
// entries are spilled all together, so that its queue stays "spilled,
// then in memory", oldest first, which keeps the order of application
// without a flag per entry.

// intakeRefSize is what an entry whose event is only in intake.db costs
// in memory (its intakeRef in its webhook's queue), counted against
// IntakeOptions.Memory.
const intakeRefSize = 16

// spillTo is the part of IntakeOptions.Memory that spilling brings the
// memory held down to, so that the ingests after it need not spill again
// at once.
const spillTo = 3.0 / 4

// intakeRef is an entry whose event is only in intake.db.
type intakeRef struct {
	seq  int64
	size int64 // what it counts against IntakeOptions.Size
}

// intakeRun is a run of spilled entries of one webhook, oldest first, that
// share their targets (those of the webhook's configuration when they
// were ingested, one slice for all).
type intakeRun struct {
	// targets are nil for replayed entries: their deliveries are found by
	// the engine's recovery, not told (IntakeOptions.Applied).
	targets []Target
	refs    []intakeRef
}

// appendRef adds ref to runs, in the last run if it has the same targets.
func appendRef(runs []intakeRun, targets []Target, ref intakeRef) []intakeRun {
	if n := len(runs); n > 0 && sameTargets(runs[n-1].targets, targets) {
		runs[n-1].refs = append(runs[n-1].refs, ref)
		return runs
	}
	return append(runs, intakeRun{targets: targets, refs: []intakeRef{ref}})
}

// sameTargets reports whether a and b are the same slice: the targets of
// one route, shared by all its events.
func sameTargets(a, b []Target) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// spill drops from memory the events of whole webhooks' queues, the last
// in the applier's order first, until need bytes are given back or none is
// left to drop; it returns what it gave back. Entries being committed or
// applied stay. Under in.mu.
func (in *Intake) spill(need int64) int64 {
	var freed int64
	for i := len(in.ready) - 1; i >= 0 && freed < need; i-- {
		freed += in.spillQueue(in.queues[in.ready[i]])
	}
	return freed
}

// spillQueue drops the events of q's entries from memory, keeping their
// refs, and returns the bytes given back. Under in.mu.
func (in *Intake) spillQueue(q *intakeQueue) int64 {
	var freed int64
	for _, e := range q.entries {
		q.spilled = appendRef(q.spilled, e.targets, intakeRef{seq: e.seq, size: e.size})
		freed += e.size - intakeRefSize
	}
	in.spilledNow += int64(len(q.entries))
	in.spilledTotal.Add(int64(len(q.entries)))
	q.entries = nil
	in.held -= freed
	return freed
}

// intakeBacklog is what one apply took of a webhook's queue: its spilled
// runs, then its entries in memory, oldest first.
type intakeBacklog struct {
	webhookID string
	runs      []intakeRun
	entries   []*intakeEntry
}

func (b *intakeBacklog) empty() bool { return len(b.runs) == 0 && len(b.entries) == 0 }

// next takes the entries of the next transaction: at least one, up to
// loadChunk and group commit's bound of bytes. Spilled ones come without
// their events (load reads them).
func (b *intakeBacklog) next() []*intakeEntry {
	var chunk []*intakeEntry
	var size int64
	for len(chunk) < loadChunk && size < maxBatchBytes {
		switch {
		case len(b.runs) > 0:
			r := &b.runs[0]
			ref := r.refs[0]
			chunk = append(chunk, &intakeEntry{seq: ref.seq, webhookID: b.webhookID, targets: r.targets, size: ref.size, spilled: true})
			if r.refs = r.refs[1:]; len(r.refs) == 0 {
				b.runs = b.runs[1:]
			}
			size += ref.size
		case len(b.entries) > 0:
			e := b.entries[0]
			b.entries = b.entries[1:]
			chunk = append(chunk, e)
			size += e.size
		default:
			return chunk
		}
	}
	return chunk
}

// spillBack turns chunk (entries taken and not applied) and what is left
// of b into spilled runs, oldest first, for the head of the webhook's
// queue after a failed apply: they are read again from intake.db when it
// is tried again, and a webhook that cannot be written holds no memory
// meanwhile. It returns the runs, how many entries they hold and the
// memory given back.
func (b *intakeBacklog) spillBack(chunk []*intakeEntry) (runs []intakeRun, n, freed int64) {
	add := func(e *intakeEntry) {
		runs = appendRef(runs, e.targets, intakeRef{seq: e.seq, size: e.size})
		freed += e.held() - intakeRefSize
		n++
	}
	for _, e := range chunk {
		add(e)
	}
	for _, r := range b.runs {
		for _, ref := range r.refs {
			runs = appendRef(runs, r.targets, ref)
			n++
		}
	}
	for _, e := range b.entries {
		add(e)
	}
	b.runs, b.entries = nil, nil
	return runs, n, freed
}

// refCount is how many entries runs hold.
func refCount(runs []intakeRun) int64 {
	var n int64
	for _, r := range runs {
		n += int64(len(r.refs))
	}
	return n
}
