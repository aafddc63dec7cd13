package caddymodule

import (
	"errors"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/storage"
)

// The collectors live for the process and keep counting across reloads;
// each config registers them into its own registry (Caddy makes a new one
// per config), which serves them on /metrics.
var (
	ingestAnswers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "webhooker", Name: "ingest_requests_total",
		Help: "Requests to entrypoints, by the status code answered (200: stored).",
	}, []string{"code"})
	verificationFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "webhooker", Name: "verification_failures_total",
		Help: "Requests refused (401, nothing stored) because no verify rule of their entrypoint passed, by the scheme and reason of the refusal.",
	}, []string{"scheme", "reason"})
	deliveryAttempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "webhooker", Name: "delivery_attempts_total",
		Help: "Recorded delivery attempts, by target type and the delivery's status after the attempt.",
	}, []string{"target_type", "status"})
)

const queueHelp = "Deliveries waiting for a worker, by queue: fresh (from ingest) or retry (retries come due, and work read back from the event DBs: retry_queue_size)."

// countIngest counts the answer of one ingest: err is what ServeHTTP returns.
func countIngest(err error) {
	code := 200
	var he caddyhttp.HandlerError
	if errors.As(err, &he) {
		code = he.StatusCode
	} else if err != nil {
		code = 500
	}
	countIngestCode(code)
}

// countIngestCode counts an ingest answered with code.
func countIngestCode(code int) {
	ingestAnswers.WithLabelValues(strconv.Itoa(code)).Inc()
}

func countVerificationFailure(scheme, reason string) {
	verificationFailures.WithLabelValues(scheme, reason).Inc()
}

// intakeHelp is the help of the intake_events gauge.
const intakeHelp = "Acknowledged events in the intake: unapplied (not yet in their webhook's event database), spilled (unapplied ones whose events were dropped from memory past intake_memory, read back from intake.db when applied) and unsynced (not yet fsynced there, unapplied ones included; the intake keeps them until then)."

// registerMetrics puts the collectors in the config's registry, with gauges
// of this config's engine.
func registerMetrics(ctx caddy.Context, data *pooledDir, logger *zap.Logger) error {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	queue := func(pick func(fresh, retry int) int) func() float64 {
		return func() float64 {
			if d := data.dir.Load(); d != nil {
				return float64(pick(d.Engine().QueueLengths()))
			}
			return 0
		}
	}
	intake := func(pick func(storage.IntakeFigures) float64) func() float64 {
		return func() float64 {
			if d := data.dir.Load(); d != nil {
				return pick(d.IntakeFigures())
			}
			return 0
		}
	}
	for _, c := range []prometheus.Collector{
		ingestAnswers, deliveryAttempts, verificationFailures,
		attempts, attemptDuration, deliveriesExhausted, breakerOpenings, eventsIngested, eventsDropped,
		eventsFiltered, filterErrors, eventsDeduplicated,
		stateCollector{data: data, logger: logger}, clusterCollector{data: data},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "caddy", Subsystem: "webhooker", Name: "delivery_queue_length",
			Help: queueHelp, ConstLabels: prometheus.Labels{"queue": "fresh"},
		}, queue(func(fresh, _ int) int { return fresh })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "caddy", Subsystem: "webhooker", Name: "delivery_queue_length",
			Help: queueHelp, ConstLabels: prometheus.Labels{"queue": "retry"},
		}, queue(func(_, retry int) int { return retry })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "caddy", Subsystem: "webhooker", Name: "open_event_dbs",
			Help: "Event databases open now (at most max_open_event_dbs).",
		}, func() float64 {
			if d := data.dir.Load(); d != nil {
				return float64(d.OpenEventDBs())
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "caddy", Subsystem: "webhooker", Name: "intake_events",
			Help: intakeHelp, ConstLabels: prometheus.Labels{"state": "unapplied"},
		}, intake(func(f storage.IntakeFigures) float64 { return float64(f.Unapplied) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "caddy", Subsystem: "webhooker", Name: "intake_events",
			Help: intakeHelp, ConstLabels: prometheus.Labels{"state": "unsynced"},
		}, intake(func(f storage.IntakeFigures) float64 { return float64(f.Waiting) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "caddy", Subsystem: "webhooker", Name: "intake_events",
			Help: intakeHelp, ConstLabels: prometheus.Labels{"state": "spilled"},
		}, intake(func(f storage.IntakeFigures) float64 { return float64(f.Spilled) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "caddy", Subsystem: "webhooker", Name: "intake_memory_bytes",
			Help: "Bytes of memory the acknowledged events not yet applied to their event databases hold (at most intake_memory; past it, events are spilled: only their place in intake.db stays in memory).",
		}, intake(func(f storage.IntakeFigures) float64 { return float64(f.Held) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "caddy", Subsystem: "webhooker", Name: "intake_bytes",
			Help: "Bytes of acknowledged events intake.db holds until they are synced into their event databases (at most intake_size; past it, ingest waits).",
		}, intake(func(f storage.IntakeFigures) float64 { return float64(f.OnDisk) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "caddy", Subsystem: "webhooker", Name: "intake_apply_pauses_total",
			Help: "Waits of the intake's applier after applying to an event database it had to open, while other webhooks waited: under load spread over more webhooks than max_open_event_dbs it paces its opens so that ingest keeps the CPU, and batches grow instead.",
		}, intake(func(f storage.IntakeFigures) float64 { return float64(f.Paused) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "caddy", Subsystem: "webhooker", Name: "retry_timers",
			Help: "Retry waits the delivery engine holds: webhooks with deliveries waiting for their retry time (one each, however many wait), and deliveries waiting out a storage fault.",
		}, func() float64 {
			if d := data.dir.Load(); d != nil {
				return float64(d.Engine().PendingTimers())
			}
			return 0
		}),
	} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}
