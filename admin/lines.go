package admin

import (
	"context"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// lineView is where an ordered target's line stands: the delivery at its
// head, which every other open delivery of the target waits for, and how
// many are open, the head among them. A head that is retrying is failing:
// the line is held until it is delivered or gives up (or an operator
// cancels it).
type lineView struct {
	Head lineHeadView `json:"head"`
	Open int          `json:"open"`
}

type lineHeadView struct {
	DeliveryID    string                 `json:"delivery_id"`
	EventID       string                 `json:"event_id"`
	Status        storage.DeliveryStatus `json:"status"`
	Attempts      int                    `json:"attempts"`
	NextAttemptAt *time.Time             `json:"next_attempt_at,omitempty"`
	LastError     string                 `json:"last_error,omitempty"`
}

// addLine adds the line of v's target if it is ordered and its line holds
// open deliveries. The read is one probe and one count of an index range
// of the target's event DB; it is not the request's to cut short, as the
// rest of a view is read from memory.
func (h *Handler) addLine(v *targetView) {
	if h.b.Line == nil || v.Type != storage.TargetHTTP || !v.Options.Ordered {
		return
	}
	l, ok, err := h.b.Line(context.Background(), v.WebhookID, v.ID)
	if err != nil {
		v.LineError = err.Error()
		return
	}
	if !ok {
		return
	}
	head := lineHeadView{DeliveryID: l.Head.ID, EventID: l.Head.EventID, Status: l.Head.Status,
		Attempts: l.Head.Attempts, LastError: l.Head.LastError}
	if !l.Head.NextAttemptAt.IsZero() {
		at := l.Head.NextAttemptAt
		head.NextAttemptAt = &at
	}
	v.Line = &lineView{Head: head, Open: l.Open}
}
