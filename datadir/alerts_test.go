package datadir

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/webhooker/caddy-webhooker/storage"
)

// alertReceiver is an operational webhook: it records what it is sent and
// answers with what answer says (200 when nil).
type alertReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	received []receivedAlert
	got      chan receivedAlert
	answer   func(n int, r *http.Request) int // n: requests so far, this one included
}

type receivedAlert struct {
	Header http.Header
	Body   []byte
	Type   string
	Data   map[string]any
}

func newAlertReceiver(t *testing.T) *alertReceiver {
	t.Helper()
	rcv := &alertReceiver{got: make(chan receivedAlert, 4096)}
	rcv.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a := receivedAlert{Header: r.Header.Clone(), Body: body}
		var parsed struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		}
		if err := json.Unmarshal(body, &parsed); err != nil {
			t.Errorf("the operational webhook got a body that is not JSON: %q", body)
		}
		a.Type, a.Data = parsed.Type, parsed.Data
		rcv.mu.Lock()
		rcv.received = append(rcv.received, a)
		n := len(rcv.received)
		answer := rcv.answer
		rcv.mu.Unlock()
		code := http.StatusOK
		if answer != nil {
			code = answer(n, r)
		}
		w.WriteHeader(code)
		if code >= 200 && code < 300 {
			rcv.got <- a
		}
	}))
	t.Cleanup(rcv.Close)
	return rcv
}

func (rcv *alertReceiver) requests() int {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	return len(rcv.received)
}

// plainPost POSTs body with its message id, unsigned: the sender's own
// behaviour (queue, tries) is tested here, signing with the engine's
// PostSigned through a Dir.
func plainPost(ctx context.Context, url string, _ storage.TargetOptions, msgID string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Webhook-Id", msgID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

func closeSender(t *testing.T, s *alertSender) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.close(ctx); err != nil {
		t.Error(err)
	}
}

func waitAlert(t *testing.T, rcv *alertReceiver) receivedAlert {
	t.Helper()
	select {
	case a := <-rcv.got:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("no alert reached the operational webhook")
		return receivedAlert{}
	}
}

// An alert the receiver refuses is tried again with the same message id,
// until a 2xx; after alertTries refusals it is given up, counted and
// logged.
func TestAlertSenderRetriesThenGivesUp(t *testing.T) {
	rcv := newAlertReceiver(t)
	core, logs := observer.New(zap.WarnLevel)
	s := newAlertSender(plainPost, zap.New(core))
	s.backoff = time.Millisecond
	defer closeSender(t, s)
	to := OperationalWebhook{URL: rcv.URL}

	rcv.answer = func(n int, _ *http.Request) int {
		if n <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	s.send(to, Alert{Type: AlertBreakerOpened, At: time.Now(), WebhookName: "w", TargetName: "t"})
	a := waitAlert(t, rcv)
	if rcv.requests() != 3 {
		t.Errorf("%d requests for an alert refused twice, want 3", rcv.requests())
	}
	rcv.mu.Lock()
	for i, r := range rcv.received {
		if id := r.Header.Get("Webhook-Id"); id != a.Header.Get("Webhook-Id") || id == "" {
			t.Errorf("try %d has message id %q, the delivered one %q: want one id for every try", i+1, id, a.Header.Get("Webhook-Id"))
		}
	}
	rcv.answer = func(int, *http.Request) int { return http.StatusInternalServerError }
	rcv.received = nil
	rcv.mu.Unlock()

	s.send(to, Alert{Type: AlertBreakerClosed, At: time.Now(), WebhookName: "w", TargetName: "t"})
	deadline := time.Now().Add(10 * time.Second)
	for s.failed.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // waits for a counter that must move
	}
	if got := s.failed.Load(); got != 1 {
		t.Fatalf("failed = %d after an alert refused every time, want 1", got)
	}
	if n := rcv.requests(); n != alertTries {
		t.Errorf("%d tries of an alert refused every time, want %d", n, alertTries)
	}
	if logs.FilterMessage("operational webhook: alert not delivered").Len() != 1 {
		t.Errorf("the alert given up was not logged at WARN: %v", logs.All())
	}
}

// While the receiver is stuck, alerts queue up to alertQueueSize; those
// beyond are dropped, counted and logged once, and the queued ones all
// arrive when it answers again.
func TestAlertSenderQueueIsBounded(t *testing.T) {
	rcv := newAlertReceiver(t)
	stuck := make(chan struct{})
	inside := make(chan struct{}, 1)
	rcv.answer = func(n int, _ *http.Request) int {
		if n == 1 {
			inside <- struct{}{}
			<-stuck
		}
		return http.StatusOK
	}
	core, logs := observer.New(zap.WarnLevel)
	s := newAlertSender(plainPost, zap.New(core))
	defer closeSender(t, s)
	to := OperationalWebhook{URL: rcv.URL}
	alert := Alert{Type: AlertDeliveryExhausted, At: time.Now(), WebhookName: "w", TargetName: "t"}

	s.send(to, alert)
	<-inside // the first is being sent, out of the queue
	const extra = 10
	for range alertQueueSize + extra {
		s.send(to, alert)
	}
	if got := s.dropped.Load(); got != extra {
		t.Errorf("dropped = %d, want %d (the queue holds %d)", got, extra, alertQueueSize)
	}
	if n := logs.FilterMessage("operational webhook: queue full, alerts dropped until it drains").Len(); n != 1 {
		t.Errorf("the overflow was logged %d times, want once", n)
	}
	close(stuck)
	for range alertQueueSize + 1 {
		waitAlert(t, rcv)
	}
	if n := rcv.requests(); n != alertQueueSize+1 {
		t.Errorf("the receiver got %d alerts, want %d", n, alertQueueSize+1)
	}
}
