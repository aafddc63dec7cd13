package caddymodule

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/engine"
	"github.com/webhooker/caddy-webhooker/storage"
)

// The series that name the failing webhook and target. Each carries the
// labels webhook (name), webhook_id and target (name): names are what an
// operator reads, and the id keeps two tenants' webhooks of the same name
// apart. With metrics_per_target off those labels are empty on every
// series, which folds them to one per target type: their number no longer
// grows with the webhooks (see the README for the figures).
var (
	attempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "webhooker", Name: "attempts_total",
		Help: "Recorded delivery attempts, by webhook, target and the delivery's status after the attempt (delivered, retrying, failed).",
	}, []string{"webhook", "webhook_id", "target", "target_type", "status"})
	attemptDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "webhooker", Name: "attempt_duration_seconds",
		Help: "How long delivery attempts took, from the request sent to the answer read (or the error), by webhook and target.",
		// From a nearby receiver to one near its timeout; fewer buckets
		// than Prometheus's default, as there is a histogram per target.
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
	}, []string{"webhook", "webhook_id", "target", "target_type"})
	deliveriesExhausted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "webhooker", Name: "deliveries_exhausted_total",
		Help: "Deliveries that gave up (failed for good: retries exhausted or a permanent failure), by webhook and target.",
	}, []string{"webhook", "webhook_id", "target", "target_type"})
	breakerOpenings = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "webhooker", Name: "breaker_openings_total",
		Help: "Times a target's circuit breaker opened (after failures in a row, or a failed probe), by webhook and target.",
	}, []string{"webhook", "webhook_id", "target"})
	eventsIngested = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "webhooker", Name: "events_ingested_total",
		Help: "Events stored by entrypoints (answered 200), by webhook.",
	}, []string{"webhook", "webhook_id"})
)

var (
	breakerStateDesc = prometheus.NewDesc("caddy_webhooker_breaker_state",
		"Circuit breakers not closed, by webhook, target and state (open: deliveries held until the cooldown ends; half-open: a probe is under way): 1 each. With metrics_per_target off, the number of targets in each state.",
		[]string{"webhook", "webhook_id", "target", "state"}, nil)
	oldestOpenDesc = prometheus.NewDesc("caddy_webhooker_oldest_open_delivery_age_seconds",
		"Age of the oldest delivery still to do (pending or retrying) of each webhook that has one. With metrics_per_target off, the oldest of all webhooks.",
		[]string{"webhook", "webhook_id"}, nil)
)

// metricsPerTarget is metrics_per_target of the config in force. The
// observer is given to the data directory once, when it opens, and outlives
// reloads; each config's Start sets this.
var metricsPerTarget atomic.Bool

func init() { metricsPerTarget.Store(true) }

// targetLabels are the webhook, webhook_id and target labels of a delivery,
// empty when folded.
func targetLabels(webhookName, webhookID, targetName string) (string, string, string) {
	if !metricsPerTarget.Load() {
		return "", "", ""
	}
	return webhookName, webhookID, targetName
}

// deliveryMetrics counts what the engine does: the datadir's extra
// Observer. Counting never blocks.
type deliveryMetrics struct{}

func (deliveryMetrics) AttemptRecorded(a engine.AttemptInfo) {
	deliveryAttempts.WithLabelValues(string(a.TargetType), string(a.Status)).Inc()
	w, id, t := targetLabels(a.WebhookName, a.WebhookID, a.TargetName)
	attempts.WithLabelValues(w, id, t, string(a.TargetType), string(a.Status)).Inc()
	attemptDuration.WithLabelValues(w, id, t, string(a.TargetType)).Observe(a.Duration.Seconds())
}

func (deliveryMetrics) DeliveryExhausted(a engine.AttemptInfo) {
	w, id, t := targetLabels(a.WebhookName, a.WebhookID, a.TargetName)
	deliveriesExhausted.WithLabelValues(w, id, t, string(a.TargetType)).Inc()
}

func (deliveryMetrics) BreakerOpened(ti engine.TargetInfo, _ time.Time, _ string) {
	w, id, t := targetLabels(ti.WebhookName, ti.WebhookID, ti.TargetName)
	breakerOpenings.WithLabelValues(w, id, t).Inc()
}

func (deliveryMetrics) BreakerClosed(engine.TargetInfo) {}

// countEvent counts an event stored for webhook.
func countEvent(webhook *storage.Webhook) {
	w, id, _ := targetLabels(webhook.Name, webhook.ID, "")
	eventsIngested.WithLabelValues(w, id).Inc()
}

// scrapeTimeout bounds the reads of a scrape (the oldest open delivery of
// each webhook with open deliveries).
const scrapeTimeout = 5 * time.Second

// stateCollector reads, at each scrape, what is true now rather than
// counted: breakers not closed and the age of the oldest open deliveries.
type stateCollector struct {
	data   *pooledDir
	logger *zap.Logger
}

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- breakerStateDesc
	ch <- oldestOpenDesc
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.data.dir.Load()
	if d == nil {
		return // not open yet: nothing to say
	}
	snap := d.Engine().Snapshot()
	perTarget := metricsPerTarget.Load()

	if states := d.Engine().BreakerStates(); len(states) > 0 {
		folded := make(map[string]int)
		for _, w := range snap.Webhooks() {
			for _, t := range w.Targets {
				state, ok := states[t.ID]
				switch {
				case !ok:
				case perTarget:
					ch <- prometheus.MustNewConstMetric(breakerStateDesc, prometheus.GaugeValue, 1, w.Name, w.ID, t.Name, state)
				default:
					folded[state]++
				}
			}
		}
		for state, n := range folded {
			ch <- prometheus.MustNewConstMetric(breakerStateDesc, prometheus.GaugeValue, float64(n), "", "", "", state)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	oldest, err := d.OldestOpenDelivery(ctx)
	if err != nil {
		// What was read is still reported; the rest is missing, not zero.
		c.logger.Warn("reading the oldest open deliveries for metrics", zap.Error(err))
	}
	now := time.Now()
	var oldestOfAll time.Time
	for id, at := range oldest {
		if !perTarget {
			if oldestOfAll.IsZero() || at.Before(oldestOfAll) {
				oldestOfAll = at
			}
			continue
		}
		name := ""
		if w, ok := snap.Webhook(id); ok {
			name = w.Name
		}
		ch <- prometheus.MustNewConstMetric(oldestOpenDesc, prometheus.GaugeValue, now.Sub(at).Seconds(), name, id)
	}
	if !oldestOfAll.IsZero() {
		ch <- prometheus.MustNewConstMetric(oldestOpenDesc, prometheus.GaugeValue, now.Sub(oldestOfAll).Seconds(), "", "")
	}
}

var _ engine.Observer = deliveryMetrics{}
