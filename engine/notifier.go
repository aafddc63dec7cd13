// Package engine delivers stored events to their targets. It owns the
// Notifier seam that ingest calls after commit, the self-contained Task it
// carries, and (with the delivery engine) the workers, retry timers, backoff,
// circuit breakers and recovery.
package engine

import (
	"net/http"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// InlineBodyLimit is the body size from which a Task carries no body: at this
// size and over, the body is read from the event DB when the attempt runs, so
// that queues hold bounded memory.
const InlineBodyLimit = 16 << 10

// EventMeta is what a delivery needs to know of its event, besides the body.
type EventMeta struct {
	ID          string
	Method      string
	Path        string
	Query       string
	Headers     http.Header
	ContentType string
	RemoteAddr  string
	ReceivedAt  time.Time
	BodySize    int
	// Verified is the verify scheme the event passed, sent as
	// Webhooker-Verified; "" when its entrypoint verifies nothing.
	Verified string
}

// Task is one delivery to run, self-contained: a worker needs no database
// read to attempt it unless Body is nil.
type Task struct {
	WebhookID  string
	DeliveryID string
	Target     storage.Target
	Event      EventMeta
	// Body is the event body when it is under InlineBodyLimit, else nil.
	Body *string
}

// Notifier takes tasks for deliveries that are already committed as pending.
// Notify must not block: a task it cannot take at once stays pending in the
// event DB, where the engine finds it again.
type Notifier interface {
	Notify(tasks []Task)
}

// TasksForEvent builds the tasks of a freshly stored event: one per delivery
// (the pending ones WebhookDB.Ingest returns, or a redelivery's), each with
// its target from targets.
func TasksForEvent(webhookID string, ev *storage.Event, deliveries []storage.Delivery, targets []storage.Target) []Task {
	meta := EventMeta{
		ID: ev.ID, Method: ev.Method, Path: ev.Path, Query: ev.Query, Headers: ev.Headers,
		ContentType: ev.ContentType, RemoteAddr: ev.RemoteAddr, ReceivedAt: ev.ReceivedAt,
		BodySize: len(ev.Body), Verified: ev.Verified,
	}
	var body *string
	if len(ev.Body) < InlineBodyLimit {
		s := string(ev.Body)
		body = &s
	}
	tasks := make([]Task, 0, len(deliveries))
	for _, d := range deliveries {
		for _, t := range targets {
			if t.ID == d.TargetID {
				tasks = append(tasks, Task{WebhookID: webhookID, DeliveryID: d.ID, Target: t, Event: meta, Body: body})
				break
			}
		}
	}
	return tasks
}
