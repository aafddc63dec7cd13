package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// limitPacer stops an attack after n hits.
type limitPacer struct {
	inner vegeta.Pacer
	n     uint64
}

func (l limitPacer) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	if hits >= l.n {
		return 0, true
	}
	return l.inner.Pace(elapsed, hits)
}

func (l limitPacer) Rate(elapsed time.Duration) float64 { return l.inner.Rate(elapsed) }

// checkMemory ingests many large events while the http target is down
// (answers 503), records Caddy's RSS, then brings the target up and waits
// until every acknowledged event is delivered.
func checkMemory(e *env, r *result) error {
	cfg := e.cfg
	rc, err := newReceiver(nil)
	if err != nil {
		return err
	}
	defer rc.close()
	rc.down.Store(true)
	dir := e.dir("memory")
	defer os.RemoveAll(dir) // gigabytes of event bodies
	s := newSite(dir)
	s.options = []string{fmt.Sprintf("max_body_size %d", cfg.memoryBody+1<<20)}
	targetOpts := []string{"max_retries 100", "backoff 1s 5s", "breaker " + cfg.memoryBreaker}
	s.webhooks = webhook("mem", "mem", httpTarget("sink", rc.URL, targetOpts...))
	p, _, err := e.start(dir, s, "mem", time.Minute)
	if err != nil {
		return err
	}
	defer p.stop()
	start := p.stats()
	logf("   target down (503); ingesting %d × %d bytes over %d connections", cfg.memoryEvents, cfg.memoryBody, cfg.memoryConns)

	a := newAcks()
	body := jsonBody(cfg.memoryBody)
	st := runLoad(loadOpts{targeter: staticTarget(s.url("mem"), body), workers: cfg.memoryConns,
		count: cfg.memoryEvents, timeout: 2 * time.Minute}, a.add)
	ingested := p.stats()
	ids := a.list()
	mbps := float64(st.OK) * float64(cfg.memoryBody) / (1 << 20) / st.seconds()
	logf("   %d acked in %.1f s (%.1f MiB/s); RSS %s, peak %s; target up", len(ids), st.seconds(), mbps,
		mib(ingested.rssKB), mib(ingested.hwmKB))

	heldAt := rc.counts()
	rc.down.Store(false)
	up := time.Now()
	missing := rc.waitDelivered(ids, e.cfg.memoryDrainTimeout())
	drain := time.Since(up)
	drained := p.stats()
	states, _ := deliveryStates(s.dataDir, "mem")
	rcv := rc.counts()
	disk := dirSize(s.dataDir)

	r.row("setup", "target answers 503; options: %v; max_body_size %d; %d ingest connections",
		targetOpts, cfg.memoryBody+1<<20, cfg.memoryConns)
	r.row("ingest while down", "%d × %s: %d acked in %.1f s (%.1f MiB/s), %s; p50 %s, p99 %s",
		cfg.memoryEvents, sizeText(cfg.memoryBody), len(ids), st.seconds(), mbps, st.errorsText(), ms(st.quantile(0.5)), ms(st.quantile(0.99)))
	r.row("RSS after ingest / peak (VmHWM)", "%s / %s (%s at start)", mib(ingested.rssKB), mib(ingested.hwmKB), mib(start.rssKB))
	r.row("attempts while down", "%d answered 503 (breaker %s)", heldAt.rejected, cfg.memoryBreaker)
	if len(missing) == 0 {
		r.row("drain after the target came up", "all %d delivered in %s (%.0f/s); %d duplicates", len(ids), secs(drain), float64(len(ids))/drain.Seconds(), rcv.dups)
	} else {
		r.row("drain after the target came up", "NOT DONE: %d of %d missing after %s", len(missing), len(ids), secs(drain))
		r.fail("%d acknowledged events not delivered within %s of the target coming up", len(missing), secs(drain))
	}
	r.row("RSS after drain / peak overall", "%s / %s; %.1f CPU s for the drain", mib(drained.rssKB), mib(drained.hwmKB), (drained.cpu() - ingested.cpu()).Seconds())
	r.row("deliveries in the event DB", "%v; data_dir %.2f GiB on disk", states, float64(disk)/(1<<30))
	if st.HTTPErrors > 0 {
		r.fail("ingest got non-200 answers: %s", st.errorsText())
	}
	st.figures(r, "ingest_")
	r.fig("events", cfg.memoryEvents)
	r.fig("body_bytes", cfg.memoryBody)
	r.fig("ingest_mib_per_s", round(mbps, 1))
	r.fig("rss_start_mib", round(mibf(start.rssKB), 1))
	r.fig("rss_after_ingest_mib", round(mibf(ingested.rssKB), 1))
	r.fig("peak_rss_after_ingest_mib", round(mibf(ingested.hwmKB), 1))
	r.fig("rss_after_drain_mib", round(mibf(drained.rssKB), 1))
	r.fig("peak_rss_mib", round(mibf(drained.hwmKB), 1))
	r.fig("attempts_while_down", heldAt.rejected)
	r.fig("drain_s", round(drain.Seconds(), 2))
	r.fig("lost", len(missing))
	r.fig("duplicates", rcv.dups)
	r.fig("data_dir_bytes", disk)
	r.note("breaker '%s' (threshold, cooldown) instead of the default 5 30s, so that the drain does not start with a 30 s wait for the breaker's probe; backoff 1s 5s, max_retries 100 so nothing is given up while the target is down.", cfg.memoryBreaker)
	return nil
}

func (c *config) memoryDrainTimeout() time.Duration { return max(c.drainTimeout, 10*time.Minute) }

func sizeText(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
