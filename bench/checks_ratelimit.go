package main

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"
)

// checkRateLimit sends events at full speed to a webhook whose one target
// has `rate_limit <rate> 1s`, and times the target's arrivals: after the
// burst (the bucket's <rate>) they must come at the rate (±15 %), no second
// may hold more than the burst + the rate, and every event is delivered
// once. The deliveries put off wait in the event DB, not in memory.
func checkRateLimit(e *env, r *result) error {
	cfg := e.cfg
	rate, events := cfg.rateLimitRate, cfg.rateLimitEvents
	rc, err := newReceiver(nil)
	if err != nil {
		return err
	}
	defer rc.close()
	dir := e.dir("ratelimit")
	s := newSite(dir)
	option := fmt.Sprintf("rate_limit %d 1s", rate)
	s.webhooks = webhook("paced", "paced", httpTarget("sink", rc.URL, option))
	p, _, err := e.start(dir, s, "paced", time.Minute)
	if err != nil {
		return err
	}
	defer p.stop()

	ids := make([]string, 0, events)
	var (
		mu      sync.Mutex
		failed  int
		wg      sync.WaitGroup
		next    = make(chan struct{})
		client  = &http.Client{Timeout: 10 * time.Second}
		started = time.Now()
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				id := ""
				resp, err := client.Post(s.url("paced"), "application/json", bytes.NewReader(jsonBody(256)))
				if err == nil {
					var buf bytes.Buffer
					_, _ = buf.ReadFrom(resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						id = eventID(buf.Bytes())
					}
				}
				mu.Lock()
				if id == "" {
					failed++
				} else {
					ids = append(ids, id)
				}
				mu.Unlock()
			}
		}()
	}
	for range events {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	ingested := time.Since(started)
	if failed > 0 {
		r.fail("%d of %d ingests failed", failed, events)
	}
	expected := time.Duration(float64(len(ids)-rate) / float64(rate) * float64(time.Second))
	missing := rc.waitDelivered(ids, 2*expected+cfg.drainTimeout)
	var got []time.Time
	for _, id := range ids {
		if at, ok := rc.receivedAt(id); ok {
			got = append(got, at)
		}
	}
	slices.SortFunc(got, func(a, b time.Time) int { return a.Compare(b) })
	measured, busiest := 0.0, 0
	if len(got) > rate+1 {
		measured = float64(len(got)-rate) / got[len(got)-1].Sub(got[0]).Seconds()
	}
	for i := range got {
		j := i
		for j < len(got) && got[j].Sub(got[i]) < time.Second {
			j++
		}
		busiest = max(busiest, j-i)
	}
	rcv := rc.counts()
	r.row("setup", "target with `%s`; %d events of 256 B sent by 8 clients in %s (%.0f/s)", option, len(ids), ms(ingested),
		float64(len(ids))/ingested.Seconds())
	r.row("arrival rate after the burst", "%.2f/s (configured %d/s, ±15 %% asserted)", measured, rate)
	r.row("busiest second", "%d arrivals (at most burst + rate = %d)", busiest, 2*rate)
	r.row("outcome", "%d of %d delivered, %d duplicates, %d non-2xx", len(got), len(ids), rcv.dups, rcv.rejected)
	r.fig("events", len(ids))
	r.fig("rate_configured", rate)
	r.fig("rate_measured", round(measured, 2))
	r.fig("busiest_second", busiest)
	r.fig("delivered", len(got))
	r.fig("duplicates", rcv.dups)
	if len(missing) > 0 {
		r.fail("%d events not delivered", len(missing))
	}
	if measured < float64(rate)*0.85 || measured > float64(rate)*1.15 {
		r.fail("arrival rate %.2f/s, outside %d/s ±15 %%", measured, rate)
	}
	if busiest > 2*rate {
		r.fail("%d arrivals within one second, over burst + rate (%d)", busiest, 2*rate)
	}
	if rcv.dups > 0 {
		r.fail("%d duplicate deliveries", rcv.dups)
	}
	return nil
}
