package engine

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/storage"
)

// runRef reads a delivery back from its event DB (a retry that came due, or
// work found by a scan) and attempts it if it is still open.
func (e *Engine) runRef(ref deliveryRef) {
	ctx := context.Background()
	var (
		task     Task
		attempts int
		body     []byte
		open     bool
	)
	err := e.events.With(ctx, ref.webhookID, func(db *storage.WebhookDB) error {
		d, err := db.Delivery(ctx, ref.deliveryID)
		if err != nil {
			return err
		}
		if d.Status != storage.DeliveryPending && d.Status != storage.DeliveryRetrying {
			return nil // finished meanwhile (a scan read it just before)
		}
		ev, err := db.Event(ctx, d.EventID)
		if err != nil {
			return err
		}
		open, attempts, body = true, d.Attempts, ev.Body
		task = Task{
			WebhookID: ref.webhookID, DeliveryID: d.ID,
			Target: storage.Target{ID: d.TargetID, WebhookID: ref.webhookID},
			Event: EventMeta{
				ID: ev.ID, Method: ev.Method, Path: ev.Path, Query: ev.Query, Headers: ev.Headers,
				ContentType: ev.ContentType, RemoteAddr: ev.RemoteAddr, ReceivedAt: ev.ReceivedAt,
				BodySize: len(ev.Body),
			},
		}
		return nil
	})
	if err != nil {
		e.release(ref.deliveryID)
		e.logger.Error("reading a delivery back", zap.String("webhook", ref.webhookID),
			zap.String("delivery", ref.deliveryID), zap.Error(err))
		return
	}
	if !open {
		e.release(ref.deliveryID)
		return
	}
	e.runTask(&task, attempts, body)
}

// runTask attempts one delivery. attempts is how many it had before; body is
// the event body when the caller has it already.
func (e *Engine) runTask(t *Task, attempts int, body []byte) {
	now := time.Now()
	target, problem := e.currentTarget(t)
	if problem != "" {
		e.finish(t, storage.DeliveryResult{Attempt: attempts + 1, StartedAt: now, Error: problem},
			storage.DeliveryOutcome{Status: storage.DeliveryFailed, LastError: problem})
		return
	}
	t.Target = target
	result := storage.DeliveryResult{Attempt: attempts + 1, StartedAt: now}
	delivered := storage.DeliveryOutcome{Status: storage.DeliveryDelivered}

	switch target.Type {
	case storage.TargetDatabase:
		// The event is in its event DB already: that is the delivery.
		e.finish(t, result, delivered)
	case storage.TargetLog:
		if body == nil && t.Body == nil {
			var err error
			if body, err = e.loadBody(t); err != nil {
				e.abandon(t, err)
				return
			}
		}
		e.logEvent(t, body)
		result.Duration = time.Since(now)
		e.finish(t, result, delivered)
	case storage.TargetHTTP:
		e.attemptHTTP(t, target, attempts, body, now)
	default:
		problem := fmt.Sprintf("target %s has unknown type %q", target.Name, target.Type)
		result.Error = problem
		e.finish(t, result, storage.DeliveryOutcome{Status: storage.DeliveryFailed, LastError: problem})
	}
}

// currentTarget reads the target from the configuration in force now, so
// that a change applies to the next attempt; or says why there is none.
func (e *Engine) currentTarget(t *Task) (storage.Target, string) {
	snap := e.snapshot.Load()
	if snap == nil {
		return storage.Target{}, "no configuration loaded"
	}
	target, ok := snap.Target(t.WebhookID, t.Target.ID)
	if !ok {
		name := t.Target.Name
		if name == "" {
			name = t.Target.ID
		}
		return storage.Target{}, fmt.Sprintf("target %s was removed from the configuration", name)
	}
	if !target.Active {
		return storage.Target{}, fmt.Sprintf("target %s is disabled", target.Name)
	}
	return target, ""
}

func (e *Engine) attemptHTTP(t *Task, target storage.Target, attempts int, body []byte, now time.Time) {
	s := settingsOf(target)
	br := e.breaker(target.ID, s)
	if ok, at := br.allow(now); !ok {
		e.hold(t, at)
		return
	}
	var reader io.Reader
	switch {
	case t.Body != nil:
		reader = strings.NewReader(*t.Body)
	case body != nil:
		reader = bytes.NewReader(body)
	default:
		b, err := e.loadBody(t)
		if err != nil {
			e.abandon(t, err)
			return
		}
		reader = bytes.NewReader(b)
	}

	res := deliverHTTP(e.attempts, e.client, s, t, reader, now)
	if e.attempts.Err() != nil {
		// Cut short by a stop: not a verdict on the target, not recorded.
		e.release(t.DeliveryID)
		return
	}
	br.record(!res.countsAgainstTarget, time.Now())

	attempt := attempts + 1
	result := storage.DeliveryResult{
		Attempt: attempt, StartedAt: now, Duration: time.Since(now),
		StatusCode: res.statusCode, ResponseBody: res.response,
	}
	if res.err == nil {
		e.finish(t, result, storage.DeliveryOutcome{Status: storage.DeliveryDelivered})
		return
	}
	result.Error = res.err.Error()
	switch {
	case res.permanent:
		e.finish(t, result, storage.DeliveryOutcome{Status: storage.DeliveryFailed, LastError: result.Error})
	case attempt > s.maxRetries:
		e.finish(t, result, storage.DeliveryOutcome{Status: storage.DeliveryFailed,
			LastError: fmt.Sprintf("gave up after %d attempts: %s", attempt, result.Error)})
	default:
		delay := s.backoff.Delay(attempt)
		if d, ok := retryAfter(res.retryAfter, time.Now(), time.Second, s.backoff.Max); ok {
			delay = d
		}
		next := time.Now().Add(delay)
		e.finish(t, result, storage.DeliveryOutcome{Status: storage.DeliveryRetrying, NextAttemptAt: next, LastError: result.Error})
	}
}

// finish records an attempt and the delivery's new state, then either lets
// go of the delivery or sets its retry timer.
func (e *Engine) finish(t *Task, r storage.DeliveryResult, out storage.DeliveryOutcome) {
	r.DeliveryID = t.DeliveryID
	ctx := context.Background()
	err := e.events.With(ctx, t.WebhookID, func(db *storage.WebhookDB) error {
		return db.RecordAttempt(ctx, r, out)
	})
	if err != nil {
		// The delivery keeps its previous state in the DB: it will be tried
		// again after a restart. Never report what was not recorded.
		e.logger.Error("recording a delivery attempt", zap.String("webhook", t.WebhookID),
			zap.String("delivery", t.DeliveryID), zap.Error(err))
		e.release(t.DeliveryID)
		return
	}
	if out.Status == storage.DeliveryRetrying {
		e.schedule(deliveryRef{webhookID: t.WebhookID, deliveryID: t.DeliveryID}, out.NextAttemptAt)
		return
	}
	e.release(t.DeliveryID)
}

// hold puts off a delivery that its target's open circuit breaker stops,
// without counting an attempt.
func (e *Engine) hold(t *Task, until time.Time) {
	ctx := context.Background()
	err := e.events.With(ctx, t.WebhookID, func(db *storage.WebhookDB) error {
		return db.Reschedule(ctx, t.DeliveryID, until)
	})
	if err != nil {
		e.logger.Error("holding a delivery while its target's circuit is open", zap.String("webhook", t.WebhookID),
			zap.String("delivery", t.DeliveryID), zap.Error(err))
		e.release(t.DeliveryID)
		return
	}
	e.schedule(deliveryRef{webhookID: t.WebhookID, deliveryID: t.DeliveryID}, until)
}

// abandon lets go of a delivery that could not be attempted for a reason
// of ours (its event could not be read): it stays open in the DB.
func (e *Engine) abandon(t *Task, err error) {
	e.logger.Error("preparing a delivery attempt", zap.String("webhook", t.WebhookID),
		zap.String("delivery", t.DeliveryID), zap.Error(err))
	e.release(t.DeliveryID)
}

func (e *Engine) loadBody(t *Task) ([]byte, error) {
	ctx := context.Background()
	var body []byte
	err := e.events.With(ctx, t.WebhookID, func(db *storage.WebhookDB) error {
		var err error
		body, err = db.EventBody(ctx, t.Event.ID)
		return err
	})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("event %s is gone from its event DB: %w", t.Event.ID, err)
	}
	return body, err
}

// logEvent writes the event to the log: the log target.
func (e *Engine) logEvent(t *Task, body []byte) {
	if body == nil && t.Body != nil {
		body = []byte(*t.Body)
	}
	fields := []zap.Field{
		zap.String("webhook", t.WebhookID), zap.String("target", t.Target.Name),
		zap.String("event_id", t.Event.ID), zap.String("delivery_id", t.DeliveryID),
		zap.String("method", t.Event.Method), zap.String("path", t.Event.Path),
		zap.String("query", t.Event.Query), zap.Any("headers", redacted(t.Event.Headers)),
		zap.String("content_type", t.Event.ContentType), zap.String("remote_addr", t.Event.RemoteAddr),
		zap.Time("received_at", t.Event.ReceivedAt), zap.Int("body_size", len(body)),
	}
	if utf8.Valid(body) {
		fields = append(fields, zap.String("body", string(body)))
	} else {
		fields = append(fields, zap.String("body_base64", base64.StdEncoding.EncodeToString(body)))
	}
	e.logger.Info("webhook event", fields...)
}

// redacted hides credentials, as Caddy's access log does.
func redacted(h http.Header) http.Header {
	out := h.Clone()
	for _, name := range []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie"} {
		if _, ok := out[name]; ok {
			out[name] = []string{"REDACTED"}
		}
	}
	return out
}
