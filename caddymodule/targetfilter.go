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

// The counters of target filters, with the labels of deliverymetrics.go
// (folded with metrics_per_target off).
var (
	eventsFiltered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "webhooker", Name: "events_filtered_total",
		Help: "Events a target's filter did not match, so that the target got no delivery of them, by webhook and target (filter_errors_total counts those whose evaluation failed).",
	}, []string{"webhook", "webhook_id", "target"})
	filterErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "webhooker", Name: "filter_errors_total",
		Help: "Evaluations of a target's filter that failed (a key the event does not have, a type mismatch, the cost limit) and so did not match, by webhook and target.",
	}, []string{"webhook", "webhook_id", "target"})
)

// selectTargets gives route with only the targets whose filter matches ev,
// counting the others. A stored filter that does not compile refuses the
// event with 503: the provider sends it again once the filter is fixed,
// where storing it would send it where the filter would not (or not where
// it would).
func (h *Handler) selectTargets(route storage.Route, fe *filter.Event) (storage.Route, error) {
	if err := route.FilterError(); err != nil {
		return route, caddyhttp.Error(http.StatusServiceUnavailable, fmt.Errorf("webhook %s: %w", route.Webhook.Name, err))
	}
	return route.Select(fe, func(t storage.Target, err error) {
		w, id, name := targetLabels(route.Webhook.Name, route.Webhook.ID, t.Name)
		eventsFiltered.WithLabelValues(w, id, name).Inc()
		if err != nil {
			filterErrors.WithLabelValues(w, id, name).Inc()
			h.app.logger.Debug("a target's filter failed on an event: no delivery to it",
				zap.String("webhook", route.Webhook.Name), zap.String("target", t.Name), zap.Error(err))
		}
	}), nil
}
