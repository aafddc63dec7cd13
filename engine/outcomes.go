package engine

import (
	"github.com/webhooker/caddy-webhooker/storage"
)

// Outcomes of http attempts are recorded behind the attempt, not in its way.
// The record is a write to the webhook's event DB that, under synchronous
// full, waits for an fsync; a worker that waited for it held its target's
// slot and itself meanwhile, so a target got about MaxPerTarget attempts
// per commit latency, however fast it answered. Instead the attempt hands
// its outcome to a recorder goroutine and lets go of the slot and the
// worker at once. Concurrent records share transactions (group commit), so
// many outcomes cost one fsync.
//
// What stays as it was:
//   - The delivery stays in hand (owned) until its outcome is committed: no
//     read of its event DB takes it again, and its next attempt (a retry,
//     or a read-back) cannot start before the outcome of this one is
//     durable. Outcomes of one delivery are therefore written in order.
//   - Metrics, logs, the retry's due time and the release of the delivery
//     come after the commit (finish), never before: nothing is reported
//     that was not recorded.
//   - Stop waits for every outcome handed over, after the workers: an
//     attempt that ended is recorded before Stop returns.
//   - Durability is the file's: under synchronous full an outcome is on
//     disk when finish reports it. A power loss before that commit loses
//     the outcome: the delivery is then open in its event DB (marked in
//     flight if the mark's commit survived: counted as interrupted) and is
//     attempted again; for an attempt that delivered, that is a
//     redelivery, which at-least-once allows (receivers de-duplicate on the
//     webhook-id header). A SIGKILL loses only outcomes not yet committed,
//     with the same result. Under synchronous normal a committed outcome
//     may also be lost to a power loss, as any write of that file.

// maxOutcomesPending bounds the outcomes handed over and not yet committed.
// When it is reached, an attempt that ends waits for room: storage is then
// slower than the targets, and the attempts slow down to its pace instead of
// piling up outcomes in memory.
const maxOutcomesPending = 1024

// finishLater records an attempt's outcome on a recorder goroutine, as
// finish does, and returns once it is handed over (at once unless
// maxOutcomesPending are pending). The caller lets go of the delivery's
// slot; the delivery itself stays in hand until the outcome is committed.
func (e *Engine) finishLater(t *Task, r storage.DeliveryResult, out storage.DeliveryOutcome) {
	// A copy without the body: recording the attempt does not need it,
	// and the caller's task is its own again.
	task := *t
	task.Body = nil
	e.outcomeRoom <- struct{}{}
	e.recording.Add(1)
	go func() {
		defer func() {
			<-e.outcomeRoom
			e.recording.Done()
		}()
		e.finish(&task, r, out)
	}()
}
