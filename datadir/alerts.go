package datadir

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/storage"
)

// The types of Alert.
const (
	AlertDeliveryExhausted = "delivery.exhausted"
	AlertBreakerOpened     = "breaker.opened"
	AlertBreakerClosed     = "breaker.closed"
	AlertTargetPaused      = "target.paused"
	AlertTargetResumed     = "target.resumed"
)

// Alert is news an operator must hear of without watching the event log:
// a delivery that gave up, a target's circuit breaker opening or closing, a
// target paused or resumed. The Dir hands each to Declaration.Alerted and
// to the operational webhook.
type Alert struct {
	Type                   string // one of the Alert* constants
	At                     time.Time
	WebhookID, WebhookName string
	TargetID, TargetName   string
	EventID, DeliveryID    string // delivery.exhausted only
	Attempts               int
	Error                  string
	RetryAt                time.Time // breaker.opened
}

// OperationalWebhook is where alerts are POSTed, signed and sent like a
// delivery to an http target with Options (signing_secret, timeout,
// headers…), through the same target policy.
type OperationalWebhook struct {
	URL     string
	Options storage.TargetOptions
}

// alertBody is an alert as the operational webhook receives it, in the
// Standard Webhooks payload shape: {"type", "timestamp", "data"}.
type alertBody struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      alertData `json:"data"`
}

type alertData struct {
	WebhookID   string     `json:"webhook_id"`
	WebhookName string     `json:"webhook_name"`
	TargetID    string     `json:"target_id,omitempty"`
	TargetName  string     `json:"target_name,omitempty"`
	EventID     string     `json:"event_id,omitempty"`
	DeliveryID  string     `json:"delivery_id,omitempty"`
	Attempts    int        `json:"attempts,omitempty"`
	Error       string     `json:"error,omitempty"`
	RetryAt     *time.Time `json:"retry_at,omitempty"`
}

// MarshalJSON is the alert as the operational webhook's body.
func (a Alert) MarshalJSON() ([]byte, error) {
	b := alertBody{Type: a.Type, Timestamp: a.At.UTC(), Data: alertData{
		WebhookID: a.WebhookID, WebhookName: a.WebhookName, TargetID: a.TargetID, TargetName: a.TargetName,
		EventID: a.EventID, DeliveryID: a.DeliveryID, Attempts: a.Attempts, Error: a.Error,
	}}
	if !a.RetryAt.IsZero() {
		at := a.RetryAt.UTC()
		b.Data.RetryAt = &at
	}
	return json.Marshal(b)
}

// postFunc makes one signed POST of body to url (engine.PostSigned).
type postFunc func(ctx context.Context, url string, opts storage.TargetOptions, msgID string, body []byte) (int, error)

const (
	// alertQueueSize bounds the alerts waiting for the operational
	// webhook: an alert storm against a dead receiver costs bounded memory
	// and drops the newest, counted.
	alertQueueSize = 1024
	// alertTries is how many times one alert is POSTed before it is given
	// up, waiting alertBackoff, then twice as long each time, between tries
	// (1+2+4+8 = 15 s in all): an alert is news, stale after minutes, and a
	// durable queue of them would be a second delivery engine.
	alertTries   = 5
	alertBackoff = time.Second
)

// alertSender sends alerts to the operational webhook, one at a time, from
// a bounded queue, with one goroutine while there is work and none when
// there is not.
type alertSender struct {
	post    postFunc
	logger  atomic.Pointer[zap.Logger]
	backoff time.Duration // the first wait between two tries

	mu       sync.Mutex
	queue    []queuedAlert
	running  bool
	overflow int // alerts dropped since the last report of it
	ctx      context.Context
	stop     context.CancelFunc
	done     sync.WaitGroup

	dropped atomic.Uint64 // the queue was full
	failed  atomic.Uint64 // every try failed
	sent    atomic.Uint64
}

type queuedAlert struct {
	to    OperationalWebhook
	msgID string
	body  []byte
	alert Alert
}

func newAlertSender(post postFunc, logger *zap.Logger) *alertSender {
	ctx, stop := context.WithCancel(context.Background())
	s := &alertSender{post: post, backoff: alertBackoff, ctx: ctx, stop: stop}
	s.logger.Store(logger)
	return s
}

// send queues a for the operational webhook to; it never blocks. A full
// queue drops a, counted and logged (once per overflow: a storm logs two
// lines, not one per alert).
func (s *alertSender) send(to OperationalWebhook, a Alert) {
	body, err := json.Marshal(a)
	if err != nil { // only strings, ints and times: cannot happen
		s.logger.Load().Error("encoding an alert", zap.String("type", a.Type), zap.Error(err))
		return
	}
	q := queuedAlert{to: to, msgID: alertMessageID(), body: body, alert: a}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return
	}
	if len(s.queue) >= alertQueueSize {
		s.dropped.Add(1)
		s.overflow++
		if s.overflow == 1 {
			s.logger.Load().Warn("operational webhook: queue full, alerts dropped until it drains",
				zap.Int("queue", alertQueueSize), zap.String("type", a.Type),
				zap.String("webhook", a.WebhookName), zap.String("target", a.TargetName))
		}
		return
	}
	s.queue = append(s.queue, q)
	if !s.running {
		s.running = true
		s.done.Add(1)
		go s.run()
	}
}

// alertMessageID is the webhook-id of one alert, the same across its
// tries, so that the receiver can de-duplicate.
func alertMessageID() string {
	return "msg_" + strings.ReplaceAll(uuid.Must(uuid.NewV7()).String(), "-", "")
}

func (s *alertSender) run() {
	defer s.done.Done()
	for {
		s.mu.Lock()
		if len(s.queue) == 0 || s.ctx.Err() != nil {
			if s.overflow > 0 {
				s.logger.Load().Warn("operational webhook: alerts were dropped, the queue was full",
					zap.Int("dropped", s.overflow), zap.Uint64("dropped_since_start", s.dropped.Load()))
				s.overflow = 0
			}
			s.running = false
			s.mu.Unlock()
			return
		}
		q := s.queue[0]
		s.queue[0] = queuedAlert{}
		s.queue = s.queue[1:]
		s.mu.Unlock()
		s.deliver(q)
	}
}

// deliver POSTs q until a 2xx, alertTries times at most.
func (s *alertSender) deliver(q queuedAlert) {
	wait := s.backoff
	var last error
	for try := 1; try <= alertTries; try++ {
		code, err := s.post(s.ctx, q.to.URL, q.to.Options, q.msgID, q.body)
		switch {
		case err != nil:
			last = err
		case code < 200 || code > 299:
			last = fmt.Errorf("the operational webhook answered %d", code)
		default:
			s.sent.Add(1)
			return
		}
		if try == alertTries {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return // closing: what is left is reported by close
		}
		wait *= 2
	}
	s.failed.Add(1)
	s.logger.Load().Warn("operational webhook: alert not delivered",
		zap.String("type", q.alert.Type), zap.String("webhook", q.alert.WebhookName),
		zap.String("target", q.alert.TargetName), zap.String("msg_id", q.msgID),
		zap.Int("tries", alertTries), zap.Error(last))
}

// close stops the sender: the alert being sent is cut short, those queued
// are dropped (logged with their number). It waits for the goroutine until
// ctx is done.
func (s *alertSender) close(ctx context.Context) error {
	s.mu.Lock()
	s.stop()
	left := len(s.queue)
	s.queue = nil
	s.mu.Unlock()
	if left > 0 {
		s.logger.Load().Warn("operational webhook: alerts not sent at stop", zap.Int("alerts", left))
	}
	done := make(chan struct{})
	go func() { s.done.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("operational webhook sender still running: %w", ctx.Err())
	}
}
