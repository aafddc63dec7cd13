package engine

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/storage"
)

// Scanning an event DB is how the engine finds work it does not have in
// hand: at start (recovery), and after a full channel made it let go of a
// delivery. It is triggered, never periodic: wantScan starts one scanner
// goroutine, which ends when no scan is wanted.

func (e *Engine) wantScan(webhookIDs ...string) {
	if len(webhookIDs) == 0 {
		return
	}
	e.scanMu.Lock()
	defer e.scanMu.Unlock()
	if e.stopped() {
		return
	}
	for _, id := range webhookIDs {
		e.scanWanted[id] = true
	}
	if !e.scanning {
		e.scanning = true
		// Stop waits for the scanner too, so that no event DB is used
		// after Stop returns.
		e.workers.Add(1)
		go e.scan()
	}
}

func (e *Engine) scan() {
	defer e.workers.Done()
	for {
		e.scanMu.Lock()
		var id string
		for id = range e.scanWanted {
			break
		}
		if id == "" || e.stopped() {
			e.scanning = false
			e.scanMu.Unlock()
			return
		}
		delete(e.scanWanted, id)
		recovery := e.recovering[id]
		delete(e.recovering, id)
		e.scanMu.Unlock()
		found := e.scanWebhook(id, recovery)
		if recovery {
			e.noteRecovered(found)
		}
	}
}

// scanWebhook takes in hand every open delivery of one event DB that the
// engine does not hold already. Sending into the full retry queue blocks
// this goroutine only, until a worker makes room. The start-up scan
// (recovery) first counts the attempts that were in flight when the previous
// process died. Deliveries to a paused target are left where they are: the
// target's resumption scans for them (TargetResumed).
func (e *Engine) scanWebhook(webhookID string, recovery bool) (found scanCounts) {
	if !e.webhookLive(webhookID) || !e.events.Exists(webhookID) {
		return found // no file, no event: nothing to find (and nothing to create)
	}
	ctx := context.Background()
	var (
		open        []storage.Delivery
		interrupted map[string]storage.InterruptedAttempt
	)
	err := e.events.With(ctx, webhookID, func(db *storage.WebhookDB) error {
		if recovery {
			// An attempt of this process may have marked a delivery
			// already (one notified since Start): it is in hand, and the
			// record of an interrupted attempt is conditional on the very
			// mark read here, so it is never counted for one.
			marked, err := db.InterruptedAttempts(ctx)
			if err != nil {
				return err
			}
			interrupted = make(map[string]storage.InterruptedAttempt, len(marked))
			for _, a := range marked {
				interrupted[a.DeliveryID] = a
			}
		}
		var err error
		open, err = db.OpenDeliveries(ctx)
		return err
	})
	if err != nil {
		e.log().Error("reading open deliveries", zap.String("webhook", webhookID), zap.Error(err))
		return found
	}
	now := time.Now()
	snap := e.snapshot.Load()
	for _, d := range open {
		if target, ok := snap.Target(webhookID, d.TargetID); ok && target.Paused {
			continue
		}
		if _, inHand := e.owned.LoadOrStore(d.ID, struct{}{}); inHand {
			continue
		}
		ref := deliveryRef{webhookID: webhookID, deliveryID: d.ID}
		if a, ok := interrupted[d.ID]; ok && e.countInterrupted(webhookID, d, a) {
			found.interrupted++
			continue
		}
		if d.Status == storage.DeliveryRetrying && d.NextAttemptAt.After(now) {
			e.schedule(ref, d.NextAttemptAt)
			found.onTimers++
			continue
		}
		select {
		case e.retries <- ref:
			found.runNow++
		case <-e.stopping:
			return found
		}
	}
	return found
}
