package engine

import (
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// DeliveryInfo names one delivery and where it goes, for those watching
// the engine (metrics, logs, alerts, the event log's live updates). Names
// are those of the configuration in force when it was told.
type DeliveryInfo struct {
	WebhookID   string
	WebhookName string
	TargetID    string
	TargetName  string
	TargetType  storage.TargetType
	EventID     string
	DeliveryID  string
}

// AttemptInfo is one recorded attempt and where its delivery stands after
// it.
type AttemptInfo struct {
	DeliveryInfo
	Attempt    int
	Status     storage.DeliveryStatus // the delivery's status after the attempt
	StatusCode int                    // the target's answer; 0 when none came
	Duration   time.Duration
	Error      string // "" when delivered
}

// TargetInfo names a target, for breaker changes.
type TargetInfo struct {
	WebhookID   string
	WebhookName string
	TargetID    string
	TargetName  string
}

// Observer is told what the engine does, after it is recorded. Its methods
// are called on the engine's goroutines and must not block: hand the news
// on (a counter, a channel with room, a non-blocking send).
type Observer interface {
	// AttemptRecorded: an attempt's outcome was committed to its event DB.
	AttemptRecorded(AttemptInfo)
	// DeliveryExhausted: a delivery gave up (failed for good: its last
	// retry failed, or the failure was permanent). Told after
	// AttemptRecorded of the same attempt.
	DeliveryExhausted(AttemptInfo)
	// BreakerOpened: a target's circuit breaker opened after failures in a
	// row (or a failed probe); its deliveries are held until retryAt.
	BreakerOpened(t TargetInfo, retryAt time.Time, lastError string)
	// BreakerClosed: a probe found the target well again.
	BreakerClosed(TargetInfo)
}

// NopObserver watches nothing; embed it to implement only some methods.
type NopObserver struct{}

func (NopObserver) AttemptRecorded(AttemptInfo)                 {}
func (NopObserver) DeliveryExhausted(AttemptInfo)               {}
func (NopObserver) BreakerOpened(TargetInfo, time.Time, string) {}
func (NopObserver) BreakerClosed(TargetInfo)                    {}
