package caddymodule

import (
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/datadir"
)

// TestAlertedNeverBlocks: with an events handler stuck, the engine's calls
// of Alerted still return; what does not fit the queue is dropped and
// counted, and the stuck handler's config can still be cleaned up.
func TestAlertedNeverBlocks(t *testing.T) {
	entered := make(chan string, 1)
	release := make(chan struct{})
	var emitted []string
	e := startEventEmitter(func(name string, _ map[string]any) {
		select {
		case entered <- name:
		default:
		}
		<-release
		emitted = append(emitted, name)
	}, zap.NewNop())

	e.alerted(datadir.Alert{Type: datadir.AlertBreakerOpened})
	if name := <-entered; name != EventBreakerOpened {
		t.Fatalf("emitted %q, want %s", name, EventBreakerOpened)
	}
	// The handler holds the first; the queue takes eventQueueSize more.
	const more = eventQueueSize + 100
	returned := make(chan struct{})
	go func() {
		for range more {
			e.alerted(datadir.Alert{Type: datadir.AlertDeliveryExhausted})
		}
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("alerted blocked behind a stuck events handler")
	}
	if n := e.dropped.Load(); n != more-eventQueueSize {
		t.Errorf("dropped %d, want %d", n, more-eventQueueSize)
	}
	close(release)
	e.close()
	if emitted[0] != EventBreakerOpened || len(emitted) > 1+eventQueueSize {
		t.Errorf("emitted %d events, first %q", len(emitted), emitted[0])
	}
	// After Cleanup an alert is not even queued.
	left := len(e.queue)
	e.alerted(datadir.Alert{Type: datadir.AlertTargetPaused})
	if len(e.queue) != left {
		t.Errorf("an alert was queued after close")
	}
}

func TestEventNames(t *testing.T) {
	for typ, want := range map[string]string{
		datadir.AlertDeliveryExhausted: EventDeliveryExhausted,
		datadir.AlertBreakerOpened:     EventBreakerOpened,
		datadir.AlertBreakerClosed:     EventBreakerClosed,
		datadir.AlertTargetPaused:      EventTargetPaused,
		datadir.AlertTargetResumed:     EventTargetResumed,
	} {
		if got := eventName(typ); got != want {
			t.Errorf("eventName(%q) = %q, want %q", typ, got, want)
		}
	}
}
