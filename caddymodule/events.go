package caddymodule

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/datadir"
)

// Caddy event names of the alerts: "webhooker." and the alert type with
// '_' for '.', so that an events handler subscribes to, say,
// webhooker.delivery_exhausted.
const (
	EventDeliveryExhausted = "webhooker.delivery_exhausted"
	EventBreakerOpened     = "webhooker.breaker_opened"
	EventBreakerClosed     = "webhooker.breaker_closed"
	EventTargetPaused      = "webhooker.target_paused"
	EventTargetResumed     = "webhooker.target_resumed"
)

// eventName is the Caddy event name of an alert type.
func eventName(alertType string) string {
	return "webhooker." + strings.ReplaceAll(alertType, ".", "_")
}

// eventsDropped counts the alerts the events handlers were too slow for.
var eventsDropped = prometheus.NewCounter(prometheus.CounterOpts{
	Namespace: "caddy", Subsystem: "webhooker", Name: "caddy_events_dropped_total",
	Help: "Alerts not emitted as Caddy events because the events handlers fell behind (the operational webhook and the log still have them).",
})

// eventQueueSize bounds the alerts waiting for the events app. An alert
// beyond it is dropped (and counted): the engine never waits for an events
// handler, which runs synchronously and may be slow (an exec, a request).
const eventQueueSize = 256

// eventEmitter emits the alerts of one config as Caddy events. The engine
// tells of them on its own goroutines, which must not block: alerted only
// queues, and one goroutine per config emits, until Cleanup.
type eventEmitter struct {
	// emit is the events app's Emit, with the config's context (the
	// event's origin is the webhooker app).
	emit   func(name string, data map[string]any)
	logger *zap.Logger

	queue   chan datadir.Alert
	done    chan struct{}
	exited  chan struct{}
	stop    sync.Once
	dropped atomic.Int64
}

// newEventEmitter finds the events app of the config and starts the
// emitting goroutine; nil when the config has no events app (no `events`
// option, nor a module that loaded the app before this one), since then
// nothing is subscribed to hear the events.
func newEventEmitter(ctx caddy.Context, logger *zap.Logger) (*eventEmitter, error) {
	app, err := ctx.AppIfConfigured("events")
	if errors.Is(err, caddy.ErrNotConfigured) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading the events app: %w", err)
	}
	events := app.(*caddyevents.App)
	return startEventEmitter(func(name string, data map[string]any) { events.Emit(ctx, name, data) }, logger), nil
}

// startEventEmitter starts the goroutine that calls emit.
func startEventEmitter(emit func(name string, data map[string]any), logger *zap.Logger) *eventEmitter {
	e := &eventEmitter{
		emit: emit, logger: logger,
		queue: make(chan datadir.Alert, eventQueueSize), done: make(chan struct{}), exited: make(chan struct{}),
	}
	go e.run()
	return e
}

// alerted is the Declaration's Alerted: it never blocks.
func (e *eventEmitter) alerted(a datadir.Alert) {
	select {
	case <-e.done:
		return // this config is over; the one in force tells its own
	default:
	}
	select {
	case e.queue <- a:
	default:
		// Logged on the first drop of a run of them, not on each.
		if e.dropped.Add(1) == 1 {
			e.logger.Warn("Caddy events of webhooker alerts dropped: the events handlers are slower than the alerts come",
				zap.String("event", eventName(a.Type)), zap.Int("queue", eventQueueSize))
		}
		eventsDropped.Inc()
	}
}

func (e *eventEmitter) run() {
	defer close(e.exited)
	for {
		select {
		case <-e.done:
			return
		case a := <-e.queue:
			e.emit(eventName(a.Type), eventData(a))
			if n := e.dropped.Swap(0); n > 0 {
				e.logger.Warn("Caddy events of webhooker alerts were dropped", zap.Int64("dropped", n))
			}
		}
	}
}

// stopWait bounds how long Cleanup waits for an events handler in progress.
const stopWait = 2 * time.Second

// close stops the goroutine, waiting a little for an events handler in
// progress; one that hangs is left to finish on its own.
func (e *eventEmitter) close() {
	e.stop.Do(func() { close(e.done) })
	select {
	case <-e.exited:
	case <-time.After(stopWait):
		e.logger.Warn("an events handler of a webhooker alert is still running after the config stopped")
	}
}

// eventData is the event's data, {event.data.*} in Caddy's placeholders:
// what the alert says, the fields that do not apply left out.
func eventData(a datadir.Alert) map[string]any {
	data := map[string]any{
		"type":         a.Type,
		"at":           a.At.UTC().Format(time.RFC3339Nano),
		"webhook_id":   a.WebhookID,
		"webhook_name": a.WebhookName,
		"target_id":    a.TargetID,
		"target_name":  a.TargetName,
	}
	if a.EventID != "" {
		data["event_id"] = a.EventID
	}
	if a.DeliveryID != "" {
		data["delivery_id"] = a.DeliveryID
	}
	if a.Attempts > 0 {
		data["attempts"] = a.Attempts
	}
	if a.Error != "" {
		data["error"] = a.Error
	}
	if !a.RetryAt.IsZero() {
		data["retry_at"] = a.RetryAt.UTC().Format(time.RFC3339Nano)
	}
	return data
}
