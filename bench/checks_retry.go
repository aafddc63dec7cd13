package main

import (
	"bytes"
	"fmt"
	"net/http"
	"time"
)

// retrySlack is what each retry may take beyond its backoff: recording the
// failed attempt, reading the delivery back, sending it again.
const retrySlack = 100 * time.Millisecond

// checkRetry uses a target that fails the first N attempts of every event
// (500) and then accepts, and compares the time between attempts with the
// configured backoff: initial × 2^(k-1), capped, ±20% jitter.
func checkRetry(e *env, r *result) error {
	cfg := e.cfg
	n := cfg.retryFailures
	rc, err := newReceiver(func(rc *receiver) { rc.failFirst, rc.keepAttempts = n, true })
	if err != nil {
		return err
	}
	defer rc.close()
	dir := e.dir("retry")
	s := newSite(dir)
	opts := []string{fmt.Sprintf("max_retries %d", n+2), fmt.Sprintf("backoff %s %s", cfg.retryBackoff, cfg.retryBackoffMax), "breaker 0"}
	s.webhooks = webhook("retry", "retry", httpTarget("sink", rc.URL, opts...))
	p, _, err := e.start(dir, s, "retry", time.Minute)
	if err != nil {
		return err
	}
	defer p.stop()

	expected := make([]time.Duration, n) // wait before retry k+1
	var total time.Duration
	for k := range n {
		expected[k] = min(cfg.retryBackoff<<k, cfg.retryBackoffMax)
		total += expected[k]
	}
	// Events sent a little apart, with the breaker off (failures in a row
	// across events would open it and hold attempts).
	var ids []string
	sent := map[string]time.Time{}
	client := &http.Client{Timeout: 10 * time.Second}
	for range cfg.retryEvents {
		at := time.Now()
		resp, err := client.Post(s.url("retry"), "application/json", bytes.NewReader(jsonBody(256)))
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		resp.Body.Close()
		id := eventID(buf.Bytes())
		if resp.StatusCode != http.StatusOK || id == "" {
			return fmt.Errorf("ingest answered %s: %s", resp.Status, buf.String())
		}
		ids = append(ids, id)
		sent[id] = at
		time.Sleep(150 * time.Millisecond)
	}
	logf("   %d events; target fails %d attempts of each; expecting retries after %v (±20%%)", len(ids), n, expected)
	missing := rc.waitDelivered(ids, 2*total+30*time.Second)
	// Any attempt after the success would show up within the largest wait.
	time.Sleep(cfg.retryBackoffMax + time.Second)

	measured := make([][]time.Duration, n) // retry k: one interval per event
	outside, extra := 0, 0
	var firstLat []time.Duration
	for _, id := range ids {
		times := rc.attemptTimes(id)
		if len(times) > 0 {
			firstLat = append(firstLat, times[0].Sub(sent[id]))
		}
		if len(times) > n+1 {
			extra += len(times) - (n + 1)
		}
		for k := 0; k < n && k+1 < len(times); k++ {
			d := times[k+1].Sub(times[k])
			measured[k] = append(measured[k], d)
			lo, hi := expected[k]*8/10, expected[k]*12/10+retrySlack
			if d < lo || d > hi {
				outside++
			}
		}
	}
	r.row("setup", "target fails the first %d attempts of each event with 500; options: %v; %d events", n, opts, len(ids))
	r.row("first attempt after ingest", "median %s, max %s", ms(quantile(firstLat, 0.5)), ms(quantile(firstLat, 1)))
	for k := range n {
		lo, hi := expected[k]*8/10, expected[k]*12/10
		ok := "within"
		for _, d := range measured[k] {
			if d < lo || d > hi+retrySlack {
				ok = "OUTSIDE"
			}
		}
		r.row(fmt.Sprintf("wait before attempt %d", k+2), "configured %s ±20%% = %s–%s (+%s slack); measured min %s, median %s, max %s over %d events: %s",
			ms(expected[k]), ms(lo), ms(hi), ms(retrySlack), ms(quantile(measured[k], 0)), ms(quantile(measured[k], 0.5)),
			ms(quantile(measured[k], 1)), len(measured[k]), ok)
		r.fig(fmt.Sprintf("wait_%d_expected_ms", k+2), msf(expected[k]))
		r.fig(fmt.Sprintf("wait_%d_min_ms", k+2), msf(quantile(measured[k], 0)))
		r.fig(fmt.Sprintf("wait_%d_median_ms", k+2), msf(quantile(measured[k], 0.5)))
		r.fig(fmt.Sprintf("wait_%d_max_ms", k+2), msf(quantile(measured[k], 1)))
	}
	rcv := rc.counts()
	r.row("outcome", "%d of %d delivered at attempt %d; %d attempts after success; %d waits outside tolerance",
		len(ids)-len(missing), len(ids), n+1, extra, outside)
	r.fig("events", len(ids))
	r.fig("delivered", len(ids)-len(missing))
	r.fig("waits_outside_tolerance", outside)
	r.fig("attempts_after_success", extra)
	r.fig("duplicates", rcv.dups)
	if len(missing) > 0 {
		r.fail("%d events not delivered", len(missing))
	}
	if outside > 0 {
		r.fail("%d waits between attempts outside the configured backoff ±20%% (+%s)", outside, ms(retrySlack))
	}
	if extra > 0 {
		r.fail("%d attempts after an event was accepted", extra)
	}
	r.note("the wait is measured at the target between consecutive attempts of one event; it includes recording the failed attempt and reading the delivery back, hence the %s slack above the +20%% bound.", ms(retrySlack))
	return nil
}
