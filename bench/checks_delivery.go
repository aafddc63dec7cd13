package main

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// acks collects the event ids of 200 answers with the time the client sent
// the request and the time it had the answer (vegeta timestamp + latency).
type acks struct {
	mu    sync.Mutex
	ids   []string
	sent  map[string]time.Time
	acked map[string]time.Time
	n     atomic.Int64
	bad   int // 200 without an event id
}

func newAcks() *acks {
	return &acks{sent: make(map[string]time.Time), acked: make(map[string]time.Time)}
}

func (a *acks) add(res *vegeta.Result) {
	if res.Code != 200 {
		return
	}
	id := eventID(res.Body)
	a.mu.Lock()
	defer a.mu.Unlock()
	if id == "" {
		a.bad++
		return
	}
	a.ids = append(a.ids, id)
	a.sent[id] = res.Timestamp
	a.acked[id] = res.End()
	a.n.Add(1)
}

func (a *acks) list() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.ids...)
}

// backlogSample is acknowledged minus delivered at one moment.
type backlogSample struct {
	t       time.Duration // since the attack began
	backlog int
}

// checkDelivery ingests at a fixed rate into a webhook with one http target
// served here, and measures how long each acknowledged event takes to reach
// the target after its ack, how fast deliveries go, and whether the backlog
// grows. Every acknowledged event must be delivered.
func checkDelivery(e *env, r *result) error {
	cfg := e.cfg
	rc, err := newReceiver(nil)
	if err != nil {
		return err
	}
	defer rc.close()
	dir := e.dir("delivery")
	s := newSite(dir)
	s.webhooks = webhook("bench", "bench", httpTarget("sink", rc.URL))
	p, ready, err := e.start(dir, s, "bench", time.Minute)
	if err != nil {
		return err
	}
	defer p.stop()
	logf("   ready in %s; target %s (defaults: workers 32, max_retries 10)", secs(ready), rc.URL)
	// The readiness probes reach the target too: not counted below.
	time.Sleep(200 * time.Millisecond)
	base := rc.delivered()

	a := newAcks()
	var (
		samples  []backlogSample
		sampleMu sync.Mutex
		stop     = make(chan struct{})
		sampled  = make(chan struct{})
		began    = time.Now()
	)
	go func() {
		defer close(sampled)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				b := int(a.n.Load()) - (rc.delivered() - base)
				sampleMu.Lock()
				samples = append(samples, backlogSample{time.Since(began), b})
				sampleMu.Unlock()
			}
		}
	}()
	before := p.stats()
	st := runLoad(loadOpts{
		targeter: staticTarget(s.url("bench"), jsonBody(1024)),
		rate:     cfg.deliveryRate, workers: cfg.loadConn, duration: cfg.deliveryDuration,
	}, a.add)
	after := p.stats()
	close(stop)
	<-sampled
	ids := a.list()
	atEnd := len(ids) - len(rc.missing(ids))
	logf("   %d sent, %d acked; %d of them delivered when the load ended; draining", st.Sent, len(ids), atEnd)

	missing := rc.waitDelivered(ids, cfg.drainTimeout)
	drained := time.Since(st.End)

	// Latencies: ack -> target and send -> target, over the acked events.
	var ackLat, sendLat []time.Duration
	early := 0
	var inWindow int
	var last time.Time
	for _, id := range ids {
		got, ok := rc.receivedAt(id)
		if !ok {
			continue
		}
		d := got.Sub(a.acked[id])
		if d < 0 {
			early++
		}
		ackLat = append(ackLat, d)
		sendLat = append(sendLat, got.Sub(a.sent[id]))
		if !got.After(st.End) {
			inWindow++
		}
		if got.After(last) {
			last = got
		}
	}
	window := st.End.Sub(st.Begin)
	deliveredPerS := float64(inWindow) / window.Seconds()
	ackedPerS := float64(len(ids)) / window.Seconds()
	slope, maxBacklog := backlogTrend(samples)
	endBacklog := len(ids) - atEnd
	grew := endBacklog > max(cfg.deliveryRate/2, 50)
	rcv := rc.counts()

	r.row("ingest (offered)", "%d/s for %s: %d sent, %d acked (200), %s; ack latency p50 %s, p99 %s",
		cfg.deliveryRate, cfg.deliveryDuration, st.Sent, len(ids), st.errorsText(), ms(st.quantile(0.5)), ms(st.quantile(0.99)))
	r.row("ack→target p50 / p99 / max", "%s / %s / %s (%d of %d reached the target before the client had its 200)",
		ms(quantile(ackLat, 0.5)), ms(quantile(ackLat, 0.99)), ms(quantile(ackLat, 1)), early, len(ackLat))
	r.row("send→target p50 / p99 / max", "%s / %s / %s", ms(quantile(sendLat, 0.5)), ms(quantile(sendLat, 0.99)), ms(quantile(sendLat, 1)))
	r.row("sustained deliveries/s", "%.1f/s delivered during the load, %.1f/s acked", deliveredPerS, ackedPerS)
	growth := "did not grow"
	if grew {
		growth = "GREW"
	}
	r.row("backlog (acked − delivered)", "%s: %d at the end of the load, max %d, trend %+.1f/s", growth, endBacklog, maxBacklog, slope)
	r.row("Caddy CPU / RSS during load", "%.2f cores; RSS %s, peak %s", cores(before, after), mib(after.rssKB), mib(after.hwmKB))
	if len(missing) == 0 {
		r.row("every acked event delivered", "yes: all %d, the last %s after the load ended; %d duplicate deliveries, %d rejected", len(ids), secs(last.Sub(st.End)), rcv.dups, rcv.rejected)
	} else {
		r.row("every acked event delivered", "NO: %d of %d missing after %s", len(missing), len(ids), secs(drained))
		r.fail("%d acknowledged events not delivered within %s (first: %s)", len(missing), cfg.drainTimeout, missing[0])
	}
	if a.bad > 0 {
		r.fail("%d answers 200 without an event_id", a.bad)
	}
	if st.HTTPErrors > 0 {
		r.fail("%d non-200 answers to ingest: %s", st.HTTPErrors, st.errorsText())
	}
	st.figures(r, "ingest_")
	r.fig("rate", cfg.deliveryRate)
	r.fig("duration_s", cfg.deliveryDuration.Seconds())
	r.fig("acked", len(ids))
	r.fig("delivered", len(ids)-len(missing))
	r.fig("lost", len(missing))
	r.fig("ack_to_target_p50_ms", msf(quantile(ackLat, 0.5)))
	r.fig("ack_to_target_p99_ms", msf(quantile(ackLat, 0.99)))
	r.fig("ack_to_target_max_ms", msf(quantile(ackLat, 1)))
	r.fig("send_to_target_p50_ms", msf(quantile(sendLat, 0.5)))
	r.fig("send_to_target_p99_ms", msf(quantile(sendLat, 0.99)))
	r.fig("send_to_target_max_ms", msf(quantile(sendLat, 1)))
	r.fig("delivered_before_ack", early)
	r.fig("deliveries_per_s", round(deliveredPerS, 1))
	r.fig("acked_per_s", round(ackedPerS, 1))
	r.fig("backlog_end", endBacklog)
	r.fig("backlog_max", maxBacklog)
	r.fig("backlog_trend_per_s", round(slope, 2))
	r.fig("backlog_grew", grew)
	r.fig("duplicates", rcv.dups)
	r.fig("caddy_cores", round(cores(before, after), 3))
	r.fig("caddy_rss_mib", round(mibf(after.rssKB), 1))
	r.note("ack→target is the target's receive time minus the time the client had its 200 (vegeta timestamp + latency); negative when the engine delivered before the answer reached the client. send→target counts from when the request was sent.")
	r.note("backlog = acked − delivered, sampled every 250 ms; it 'grew' if at the end of the load it was above half a second of the offered rate (a backlog that rose and was caught up during the load shows as max, not as growth); trend is its least-squares slope over the whole load.")
	return nil
}

// backlogTrend is the least-squares slope of the samples (per second) and
// their maximum.
func backlogTrend(samples []backlogSample) (slope float64, maxB int) {
	n := float64(len(samples))
	if n < 2 {
		return 0, 0
	}
	var sx, sy, sxx, sxy float64
	for _, s := range samples {
		x, y := s.t.Seconds(), float64(s.backlog)
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
		maxB = max(maxB, s.backlog)
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return 0, maxB
	}
	return (n*sxy - sx*sy) / den, maxB
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
