package caddymodule

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/filter"
	"github.com/webhooker/caddy-webhooker/storage"
)

// eventsDeduplicated counts the repeats of idempotent ingest, with the
// labels of events_total (folded with metrics_per_target off).
var eventsDeduplicated = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "caddy", Subsystem: "webhooker", Name: "events_deduplicated_total",
	Help: "Requests answered 200 with the event_id of an earlier event because their webhook's dedup id was seen within its window: nothing stored, no delivery. By webhook.",
}, []string{"webhook", "webhook_id"})

func countDeduplicated(webhook *storage.Webhook) {
	w, id, _ := targetLabels(webhook.Name, webhook.ID, "")
	eventsDeduplicated.WithLabelValues(w, id).Inc()
}

// lazyFilterEvent is the filter.Event of an ingest, built on first use and
// shared by the dedup expression and the targets' filters (one parse of
// the body, one EventBudget for all their evaluations).
type lazyFilterEvent struct {
	ev *storage.Event
	fe *filter.Event
}

func (l *lazyFilterEvent) get() *filter.Event {
	if l.fe == nil {
		l.fe = filter.NewEvent(l.ev.Method, l.ev.Path, l.ev.Query, l.ev.Headers, l.ev.Body)
	}
	return l.fe
}

func (l *lazyFilterEvent) close() {
	if l.fe != nil {
		l.fe.Close()
	}
}

// setDedupKey gives ev the dedup id of route's webhook, if it has a dedup
// and ev yields an id: a missing header or an expression that fails or
// gives no string or int leaves ev without one, stored as any other event
// (a repeat of it is not caught; the debug log says why). A stored
// expression that does not compile refuses the event with 503, as a
// filter's does: storing it would store a repeat the webhook was told to
// catch.
func (h *Handler) setDedupKey(route storage.Route, ev *storage.Event, event func() *filter.Event) error {
	if err := route.DedupError(); err != nil {
		return caddyhttp.Error(http.StatusServiceUnavailable, fmt.Errorf("webhook %s: dedup: %w", route.Webhook.Name, err))
	}
	key, ok, err := route.DedupKey(ev.Headers, event)
	if err != nil {
		h.app.logger.Debug("the webhook's dedup expression gave no id: the event is stored without one",
			zap.String("webhook", route.Webhook.Name), zap.Error(err))
	}
	if ok {
		ev.Dedup = key
	}
	return nil
}
