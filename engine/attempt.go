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
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/storage"
)

// runRef reads a delivery back from its event DB (a retry that came due, a
// parked delivery whose turn came, or work found by a scan) and attempts it
// if it is still open. The body is read only when the attempt goes ahead.
// It returns the parked delivery to run next, if the slot it held passes on.
func (e *Engine) runRef(ref deliveryRef) (onward *deliveryRef) {
	if ref.line != "" {
		return e.runLine(ref.webhookID, ref.line)
	}
	if !e.webhookLive(ref.webhookID) {
		e.release(ref.deliveryID) // deleted meanwhile: its event DB is gone
		return e.endSlot(ref.slot)
	}
	if ref.task != nil {
		// Parked whole: in hand throughout, so nothing else attempted it
		// meanwhile, and its mark checks that it is still open.
		return e.runTask(ref.task, ref.attempts, ref.slot)
	}
	ctx := context.Background()
	var (
		task     Task
		attempts int
		open     bool
		notDue   time.Time
	)
	err := e.events.With(ctx, ref.webhookID, func(db *storage.WebhookDB) error {
		d, err := db.Delivery(ctx, ref.deliveryID)
		if err != nil {
			return err
		}
		if d.Status != storage.DeliveryPending && d.Status != storage.DeliveryRetrying {
			return nil // finished meanwhile (a read of due deliveries saw it just before)
		}
		if d.Status == storage.DeliveryRetrying && d.NextAttemptAt.After(time.Now()) {
			// An attempt recorded since a read of due deliveries saw it
			// put it off: its time has not come (the schedule has it).
			notDue = d.NextAttemptAt
			return nil
		}
		ev, size, err := db.EventMeta(ctx, d.EventID)
		if err != nil {
			return err
		}
		open, attempts = true, d.Attempts
		task = Task{
			WebhookID: ref.webhookID, DeliveryID: d.ID,
			Target: storage.Target{ID: d.TargetID, WebhookID: ref.webhookID},
			Event: EventMeta{
				ID: ev.ID, Method: ev.Method, Path: ev.Path, Query: ev.Query, Headers: ev.Headers,
				ContentType: ev.ContentType, RemoteAddr: ev.RemoteAddr, ReceivedAt: ev.ReceivedAt,
				BodySize: size, Verified: ev.Verified,
			},
		}
		return nil
	})
	if err != nil {
		e.storageTrouble(&Task{WebhookID: ref.webhookID, DeliveryID: ref.deliveryID}, "reading a delivery back", err)
		return e.endSlot(ref.slot)
	}
	if !notDue.IsZero() {
		e.schedule(ref, notDue)
		return e.endSlot(ref.slot)
	}
	if !open {
		e.releaseDone(ref.webhookID, ref.deliveryID)
		return e.endSlot(ref.slot)
	}
	return e.runTask(&task, attempts, ref.slot)
}

// runTask attempts one delivery. attempts is how many it had before; slot
// is the target whose slot the delivery was handed, if any. It returns the
// parked delivery to run next, if the slot used here passes on.
func (e *Engine) runTask(t *Task, attempts int, slot string) (onward *deliveryRef) {
	now := time.Now()
	target, problem := e.currentTarget(t)
	if problem == "" && target.Paused {
		// Let go untouched: it waits in its event DB, pending or retrying,
		// until TargetResumed scans for it.
		e.release(t.DeliveryID)
		return e.endSlot(slot)
	}
	if problem != "" || target.Type != storage.TargetHTTP {
		// Only http attempts use a slot: a handed-on one passes on at once.
		defer func() { onward = e.endSlot(slot) }()
	}
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
		body, err := e.body(t)
		if err != nil {
			e.storageTrouble(t, "reading an event body", err)
			return
		}
		e.logEvent(t, body)
		result.Duration = time.Since(now)
		e.finish(t, result, delivered)
	case storage.TargetHTTP:
		if slot == "" {
			ref := deliveryRef{webhookID: t.WebhookID, deliveryID: t.DeliveryID, task: t, attempts: attempts}
			limit := 0 // the engine's target_concurrency
			if n := target.Options.MaxInFlight; n != nil {
				limit = min(*n, e.opts.Workers) // more could never be in flight
			}
			switch e.slots.acquire(target.ID, limit, ref) {
			case parked:
				return nil // still in hand, whole or by its ids (targetslots.go)
			case overflowed:
				// Pending in its event DB: a scan finds it when the
				// target's FIFO has drained.
				e.release(t.DeliveryID)
				return nil
			}
			slot = target.ID
		}
		defer func() { onward = e.endSlot(slot) }()
		e.attemptHTTP(t, target, attempts, now)
	default:
		problem := fmt.Sprintf("target %s has unknown type %q", target.Name, target.Type)
		result.Error = problem
		e.finish(t, result, storage.DeliveryOutcome{Status: storage.DeliveryFailed, LastError: problem})
	}
	return nil // or the parked delivery a deferred endSlot hands the slot to
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

func (e *Engine) attemptHTTP(t *Task, target storage.Target, attempts int, now time.Time) {
	s := settingsOf(target)
	// Paced before the breaker is asked, so that a probe it lets through
	// is never put off and left unreported.
	if ok, at := e.rates.take(target.ID, target.Options.RateLimit, now); !ok {
		e.holdForRate(t, at)
		return
	}
	br := e.breaker(target.ID, s)
	if ok, at := br.allow(now); !ok {
		e.hold(t, br, at)
		return
	}
	if t.Body == nil {
		// Read from the event DB, up to max_body_size: few at once.
		e.largeBodies <- struct{}{}
		defer func() { <-e.largeBodies }()
	}
	body, err := e.body(t)
	if err != nil {
		e.storageTrouble(t, "reading an event body", err)
		return
	}
	// Durably, before the request goes out: if the target kills the
	// gateway, the next start counts this attempt (see interrupted.go).
	if err := e.markInFlight(t, now); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			// Not open any more (cancelled while queued): nothing to send.
			e.releaseDone(t.WebhookID, t.DeliveryID)
			return
		}
		e.storageTrouble(t, "marking an attempt in flight", err)
		return
	}
	res := deliverHTTP(e.attempts, e.client, s, t, body, now, e.tenantOwned(t.WebhookID), e.opts.GatewayID)
	if e.attempts.Err() != nil {
		// Cut short by a stop: not a verdict on the target, not recorded,
		// and not counted at the next start.
		e.cutShort.Add(1)
		e.clearInFlight(t)
		e.release(t.DeliveryID)
		return
	}
	// A refusal of the target policy made no connection: nothing learnt.
	if !res.refused {
		change := br.record(!res.countsAgainstTarget, time.Now())
		if change.closed {
			e.releaseHeld(t.WebhookID, target.ID, change.heldUntil)
		}
		if change.opened || change.probeFailed {
			// The deliveries it holds wait in the event DB untouched
			// (readDue): the webhook is due when a probe may go.
			e.dueAt(t.WebhookID, change.retryAt)
		}
		e.breakerChanged(t, change, res.err)
	}

	// Recorded behind the attempt (outcomes.go): the target's slot and
	// this worker go on to the next delivery meanwhile.
	attempt := attempts + 1
	result := storage.DeliveryResult{
		Attempt: attempt, StartedAt: now, Duration: time.Since(now),
		StatusCode: res.statusCode, ResponseBody: res.response,
	}
	if res.err == nil {
		e.finishLater(t, result, storage.DeliveryOutcome{Status: storage.DeliveryDelivered})
		return
	}
	result.Error = res.err.Error()
	slow := res.statusCode == http.StatusTooManyRequests
	retryDelay, hasRetryAfter := retryAfter(res.retryAfter, time.Now(), min(time.Second, s.backoff.Max), s.backoff.Max)
	if slow || (res.statusCode == http.StatusServiceUnavailable && hasRetryAfter) {
		// The target asks for less: all its deliveries wait, not only
		// this one, for its Retry-After or else this attempt's backoff.
		pause := s.backoff.Delay(attempt)
		if hasRetryAfter {
			pause = retryDelay
		}
		e.rates.slowDown(target.ID, time.Now().Add(pause))
	}
	switch {
	case res.permanent:
		e.finishLater(t, result, storage.DeliveryOutcome{Status: storage.DeliveryFailed, LastError: result.Error})
	case attempt > s.maxRetries:
		e.finishLater(t, result, storage.DeliveryOutcome{Status: storage.DeliveryFailed,
			LastError: gaveUp(attempt, result.Error)})
	default:
		delay := s.backoff.Delay(attempt)
		if hasRetryAfter {
			delay = retryDelay
		}
		next := time.Now().Add(delay)
		e.finishLater(t, result, storage.DeliveryOutcome{Status: storage.DeliveryRetrying, NextAttemptAt: next, LastError: result.Error})
	}
}

// finish records an attempt and the delivery's new state, then lets go of
// the delivery; a retrying one's time goes to the schedule.
func (e *Engine) finish(t *Task, r storage.DeliveryResult, out storage.DeliveryOutcome) {
	r.DeliveryID = t.DeliveryID
	ctx := context.Background()
	var (
		status  storage.DeliveryStatus
		applied bool
	)
	err := e.events.WithDelivered(ctx, t.WebhookID, func(db *storage.WebhookDB) error {
		var err error
		status, applied, err = db.RecordAttemptOutcome(ctx, r, out)
		return err
	})
	if err != nil {
		// The delivery keeps its previous state in the DB. Never report
		// what was not recorded; try again later.
		e.storageTrouble(t, "recording a delivery attempt", err)
		return
	}
	e.storageRecovered(t.DeliveryID)
	e.recorded(t, r, status, applied && status == storage.DeliveryFailed, out.LastError)
	if !applied {
		// Cancelled while the attempt was in flight: it stays as the
		// operator left it, and nothing comes due.
		e.releaseDone(t.WebhookID, t.DeliveryID)
		return
	}
	if out.Status == storage.DeliveryRetrying {
		e.schedule(deliveryRef{webhookID: t.WebhookID, deliveryID: t.DeliveryID}, out.NextAttemptAt)
		return
	}
	e.releaseDone(t.WebhookID, t.DeliveryID)
}

// hold puts off a delivery that its target's open circuit breaker stops,
// without counting an attempt.
func (e *Engine) hold(t *Task, br *breaker, until time.Time) {
	ctx := context.Background()
	err := e.events.With(ctx, t.WebhookID, func(db *storage.WebhookDB) error {
		return db.Reschedule(ctx, t.DeliveryID, until)
	})
	if errors.Is(err, storage.ErrNotFound) && e.webhookLive(t.WebhookID) {
		// Not open any more (cancelled meanwhile): nothing to hold.
		e.releaseDone(t.WebhookID, t.DeliveryID)
		return
	}
	if err != nil {
		e.storageTrouble(t, "holding a delivery while its target's circuit is open", err)
		return
	}
	e.storageRecovered(t.DeliveryID)
	ref := deliveryRef{webhookID: t.WebhookID, deliveryID: t.DeliveryID}
	// A probe may have closed the breaker while this was being written down,
	// after it released what was held then: this one goes now too.
	if br.State() == breakerClosed.String() {
		e.release(t.DeliveryID)
		e.releaseHeld(t.WebhookID, t.Target.ID, []time.Time{until})
		return
	}
	e.schedule(ref, until)
}

// A delivery that its event DB fails (disk full, file unreadable) waits
// before it is read back and tried again: storageRetryFirst after the first
// failure, twice as long after each next one, at most storageRetryMax. It is
// never dropped while its rows may still be there.
const (
	storageRetryFirst = 5 * time.Second
	storageRetryMax   = 10 * time.Minute
	// storageLogEvery is the longest a delivery's failures go unlogged;
	// otherwise the 1st, 2nd, 4th, 8th… failure is logged, with the count.
	storageLogEvery = time.Hour
)

// storageFault is the run of storage failures of one delivery.
type storageFault struct {
	failures int
	delay    time.Duration // the wait after the last failure
	logged   time.Time     // when a failure of the run was last logged
}

// storageTrouble handles a delivery that could not go on for a fault of our
// storage, not of its target: it stays open in its event DB and is read back
// later, ever less often while the fault lasts, and logged ever less often;
// if its rows are gone (the webhook was deleted), it is let go.
func (e *Engine) storageTrouble(t *Task, doing string, err error) {
	if errors.Is(err, storage.ErrNotFound) {
		e.log().Error(doing, zap.String("webhook", t.WebhookID),
			zap.String("delivery", t.DeliveryID), zap.Error(err))
		e.release(t.DeliveryID)
		return
	}
	now := time.Now()
	f, logIt := e.noteStorageFault(t.DeliveryID, now)
	if logIt {
		e.log().Error(doing, zap.String("webhook", t.WebhookID),
			zap.String("delivery", t.DeliveryID), zap.Int("failures", f.failures),
			zap.Duration("retry_in", f.delay), zap.Error(err))
	}
	e.waitOutFault(deliveryRef{webhookID: t.WebhookID, deliveryID: t.DeliveryID}, now.Add(f.delay))
}

// noteStorageFault counts one more storage failure of a delivery and
// returns its run, with the wait before the next try, and whether to log
// this failure.
func (e *Engine) noteStorageFault(deliveryID string, now time.Time) (f storageFault, logIt bool) {
	return e.noteFault(&e.storageFaults, deliveryID, now)
}

// noteFault counts one more storage failure of key in faults (a delivery's
// or a webhook's read: storageFault values), as noteStorageFault.
func (e *Engine) noteFault(faults *sync.Map, key string, now time.Time) (f storageFault, logIt bool) {
	if v, ok := faults.Load(key); ok {
		f = v.(storageFault)
	}
	f.failures++
	if f.delay == 0 {
		f.delay = e.storageRetry.first
	} else {
		f.delay = min(2*f.delay, e.storageRetry.max)
	}
	if f.failures&(f.failures-1) == 0 || now.Sub(f.logged) >= storageLogEvery {
		f.logged, logIt = now, true
	}
	faults.Store(key, f)
	return f, logIt
}

// storageRecovered ends the run of storage failures of a delivery, if it had
// one: its storage works again.
func (e *Engine) storageRecovered(deliveryID string) {
	v, ok := e.storageFaults.LoadAndDelete(deliveryID)
	if !ok {
		return
	}
	e.log().Info("storage works again for a delivery", zap.String("delivery", deliveryID),
		zap.Int("failures", v.(storageFault).failures))
}

// body is the event body: inline in the task when small, else read from
// the event DB now, when the attempt is about to use it.
func (e *Engine) body(t *Task) (io.Reader, error) {
	if t.Body != nil {
		return strings.NewReader(*t.Body), nil
	}
	ctx := context.Background()
	var body []byte
	err := e.events.WithDelivered(ctx, t.WebhookID, func(db *storage.WebhookDB) error {
		var err error
		body, err = db.EventBody(ctx, t.Event.ID)
		return err
	})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("event %s is gone from its event DB: %w", t.Event.ID, err)
	}
	if err != nil {
		return nil, err
	}
	return bytes.NewReader(body), nil
}

// logEvent writes the event to the log: the log target.
func (e *Engine) logEvent(t *Task, r io.Reader) {
	body, _ := io.ReadAll(r) // reads from memory: cannot fail
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
	e.log().Info("webhook event", fields...)
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
