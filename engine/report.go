package engine

import (
	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/storage"
)

// What the engine tells its Observer and writes to its log: every recorded
// attempt (observer only: nothing is logged per successful delivery), a
// delivery that gives up, a circuit breaker that opens or closes. Always
// after the fact is recorded, with the names of the configuration in force.

// recorded tells of an attempt whose outcome is committed: status is the
// delivery's after it; exhausted says the delivery has ended failed with
// this attempt, lastError why.
func (e *Engine) recorded(t *Task, r storage.DeliveryResult, status storage.DeliveryStatus, exhausted bool, lastError string) {
	info := e.deliveryInfo(t)
	if e.opts.Recorded != nil {
		e.opts.Recorded(info.TargetType, status)
	}
	a := AttemptInfo{DeliveryInfo: info, Attempt: r.Attempt, Status: status, StatusCode: r.StatusCode,
		Duration: r.Duration, Error: r.Error}
	e.opts.Observer.AttemptRecorded(a)
	if !exhausted {
		return
	}
	e.log().Warn("delivery gave up",
		zap.String("webhook", info.WebhookName), zap.String("target", info.TargetName),
		zap.String("event_id", info.EventID), zap.String("delivery_id", info.DeliveryID),
		zap.Int("attempts", r.Attempt), zap.String("last_error", lastError),
		zap.String("webhook_id", info.WebhookID), zap.String("target_id", info.TargetID))
	e.opts.Observer.DeliveryExhausted(a)
}

// breakerChanged tells of a circuit breaker that an attempt of t opened or
// closed; attemptErr is that attempt's error.
func (e *Engine) breakerChanged(t *Task, c breakerChange, attemptErr error) {
	if !c.opened && !c.closed && !c.probeFailed {
		return
	}
	info := e.deliveryInfo(t)
	ti := TargetInfo{WebhookID: info.WebhookID, WebhookName: info.WebhookName, TargetID: info.TargetID, TargetName: info.TargetName}
	if c.probeFailed {
		// Still down: said once when it opened, not again every cooldown.
		e.log().Debug("circuit breaker probe failed: stays open",
			zap.String("webhook", ti.WebhookName), zap.String("target", ti.TargetName),
			zap.Int("failures", c.failures), zap.Time("retry_at", c.retryAt),
			zap.String("webhook_id", ti.WebhookID), zap.String("target_id", ti.TargetID))
		return
	}
	if c.closed {
		e.log().Info("circuit breaker closed",
			zap.String("webhook", ti.WebhookName), zap.String("target", ti.TargetName),
			zap.String("webhook_id", ti.WebhookID), zap.String("target_id", ti.TargetID))
		e.opts.Observer.BreakerClosed(ti)
		return
	}
	var lastError string
	if attemptErr != nil {
		lastError = attemptErr.Error()
	}
	e.log().Warn("circuit breaker opened",
		zap.String("webhook", ti.WebhookName), zap.String("target", ti.TargetName),
		zap.Int("failures", c.failures), zap.Time("retry_at", c.retryAt), zap.String("last_error", lastError),
		zap.String("webhook_id", ti.WebhookID), zap.String("target_id", ti.TargetID))
	e.opts.Observer.BreakerOpened(ti, c.retryAt, lastError)
}

// deliveryInfo names t's delivery from the configuration in force; a target
// gone from it is named by its id.
func (e *Engine) deliveryInfo(t *Task) DeliveryInfo {
	info := DeliveryInfo{WebhookID: t.WebhookID, TargetID: t.Target.ID, TargetName: t.Target.Name,
		TargetType: t.Target.Type, EventID: t.Event.ID, DeliveryID: t.DeliveryID}
	snap := e.snapshot.Load()
	if snap == nil {
		return info
	}
	if w, ok := snap.Webhook(t.WebhookID); ok {
		info.WebhookName = w.Name
	}
	if info.TargetName == "" || info.TargetType == "" {
		if tg, ok := snap.Target(t.WebhookID, t.Target.ID); ok {
			info.TargetName, info.TargetType = tg.Name, tg.Type
		}
	}
	if info.TargetName == "" {
		info.TargetName = info.TargetID
	}
	return info
}

// BreakerStates maps the id of each target whose circuit breaker is not
// closed to its state, "open" or "half-open" (for a gauge).
func (e *Engine) BreakerStates() map[string]string {
	e.breakersMu.Lock()
	defer e.breakersMu.Unlock()
	out := make(map[string]string)
	for id, b := range e.breakers {
		if s := b.State(); s != breakerClosed.String() {
			out[id] = s
		}
	}
	return out
}
