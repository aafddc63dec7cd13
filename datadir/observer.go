package datadir

import (
	"time"

	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/engine"
)

// dirObserver is what the Dir's engine tells of its work, handed on to those
// who watch it: the extra observer of Options (metrics), the alerts (the
// declaration's Alerted and the operational webhook) and the live updates
// of the event log (Changes). None of them blocks the engine: the metrics
// count, Alerted must not block, the sender queues and Publish only marks.
type dirObserver struct {
	d     *Dir
	extra engine.Observer
}

func (o dirObserver) AttemptRecorded(a engine.AttemptInfo) {
	o.extra.AttemptRecorded(a)
	o.d.clusterDone(a)
	o.d.changes.Publish(a.WebhookID)
}

func (o dirObserver) DeliveryExhausted(a engine.AttemptInfo) {
	o.extra.DeliveryExhausted(a)
	o.d.alert(Alert{
		Type: AlertDeliveryExhausted, At: time.Now(),
		WebhookID: a.WebhookID, WebhookName: a.WebhookName, TargetID: a.TargetID, TargetName: a.TargetName,
		EventID: a.EventID, DeliveryID: a.DeliveryID, Attempts: a.Attempt, Error: a.Error,
	})
}

func (o dirObserver) BreakerOpened(t engine.TargetInfo, retryAt time.Time, lastError string) {
	o.extra.BreakerOpened(t, retryAt, lastError)
	o.d.alert(Alert{
		Type: AlertBreakerOpened, At: time.Now(),
		WebhookID: t.WebhookID, WebhookName: t.WebhookName, TargetID: t.TargetID, TargetName: t.TargetName,
		Error: lastError, RetryAt: retryAt,
	})
	// The event log shows deliveries held by the breaker.
	o.d.changes.Publish(t.WebhookID)
}

func (o dirObserver) BreakerClosed(t engine.TargetInfo) {
	o.extra.BreakerClosed(t)
	o.d.alert(Alert{
		Type: AlertBreakerClosed, At: time.Now(),
		WebhookID: t.WebhookID, WebhookName: t.WebhookName, TargetID: t.TargetID, TargetName: t.TargetName,
	})
	o.d.changes.Publish(t.WebhookID)
}

// alert hands a to the declaration in force: its Alerted, and its
// operational webhook's sender.
func (d *Dir) alert(a Alert) {
	decl := d.current.Load()
	if decl == nil {
		return
	}
	if decl.Alerted != nil {
		decl.Alerted(a)
	}
	if decl.OperationalWebhook != nil {
		d.alerts.send(*decl.OperationalWebhook, a)
	}
}

// logger is the logger of the declaration in force.
func (d *Dir) logger() *zap.Logger {
	if decl := d.current.Load(); decl != nil && decl.Logger != nil {
		return decl.Logger
	}
	return d.opts.Logger
}

// AlertCounts are what became of the alerts for the operational webhook
// since Open: sent (a 2xx), dropped (the queue was full) and failed (every
// try refused), for metrics.
func (d *Dir) AlertCounts() (sent, dropped, failed uint64) {
	return d.alerts.sent.Load(), d.alerts.dropped.Load(), d.alerts.failed.Load()
}
