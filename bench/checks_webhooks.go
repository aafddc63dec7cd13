package main

import (
	"fmt"
	"strings"
	"time"
)

// manyWebhooks declares n webhooks w00000…, each with the entrypoint
// k00000… and one database target, and returns the entrypoint keys.
func manyWebhooks(n int) (blocks string, keys []string) {
	var b strings.Builder
	keys = make([]string, n)
	for i := range n {
		keys[i] = fmt.Sprintf("k%05d", i)
		b.WriteString(webhook(fmt.Sprintf("w%05d", i), keys[i], "target db database"))
	}
	return b.String(), keys
}

// checkIdle declares many webhooks, waits until Caddy has settled after its
// start, and measures the CPU it uses while nothing happens.
func checkIdle(e *env, r *result) error {
	cfg := e.cfg
	dir := e.dir("idle")
	s := newSite(dir)
	var keys []string
	s.webhooks, keys = manyWebhooks(cfg.idleWebhooks)
	p, ready, err := e.start(dir, s, keys[len(keys)-1], 5*time.Minute)
	if err != nil {
		return err
	}
	defer p.stop()
	settled, err := p.waitSettled(2*time.Second, 20*time.Millisecond, 3*time.Minute)
	if err != nil {
		return err
	}
	logf("   %d webhooks: ready in %s, settled after %s; idle for %s", cfg.idleWebhooks, secs(ready), secs(settled), cfg.idleDuration)
	before := p.stats()
	time.Sleep(cfg.idleDuration)
	after := p.stats()
	if p.exited() {
		return fmt.Errorf("caddy exited while idle:\n%s", p.logTail(20))
	}
	cpu := after.cpu() - before.cpu()
	wall := after.at.Sub(before.at)
	r.row("webhooks declared", "%d (each: 1 entrypoint, 1 database target), fresh data_dir", cfg.idleWebhooks)
	r.row("startup", "ready in %s (a POST to the last webhook answered 200); CPU settled (≤ 20 ms per 2 s) after %s", secs(ready), secs(settled))
	r.row(fmt.Sprintf("CPU over %s idle", cfg.idleDuration), "%.2f s (utime+stime; %.3f%% of one core)", cpu.Seconds(), 100*cpu.Seconds()/wall.Seconds())
	r.row("context switches while idle", "%d (all threads; %.1f/s)", after.ctxSw-before.ctxSw, float64(after.ctxSw-before.ctxSw)/wall.Seconds())
	r.row("RSS / peak / fds / threads", "%s / %s / %d / %d", mib(after.rssKB), mib(after.hwmKB), after.fds, after.threads)
	r.fig("webhooks", cfg.idleWebhooks)
	r.fig("ready_s", round(ready.Seconds(), 2))
	r.fig("settled_s", round(settled.Seconds(), 2))
	r.fig("idle_s", round(wall.Seconds(), 1))
	r.fig("idle_cpu_s", cpu.Seconds())
	r.fig("idle_ctx_switches", after.ctxSw-before.ctxSw)
	r.fig("rss_mib", round(mibf(after.rssKB), 1))
	r.fig("peak_rss_mib", round(mibf(after.hwmKB), 1))
	r.fig("fds", after.fds)
	r.fig("threads", after.threads)
	r.note("idle CPU is read from /proc/<pid>/stat in clock ticks of 10 ms, so 0.00 s means less than one tick per measurement.")
	return nil
}

// checkMany declares many webhooks: time to start (first start creates the
// event DBs; a restart runs the recovery scan over all of them), open fds
// and RSS, then a few seconds of ingest spread across all of them.
func checkMany(e *env, r *result) error {
	cfg := e.cfg
	dir := e.dir("many")
	s := newSite(dir)
	var keys []string
	s.webhooks, keys = manyWebhooks(cfg.manyWebhooks)
	last := keys[len(keys)-1]
	p, first, err := e.start(dir, s, last, 30*time.Minute)
	if err != nil {
		return err
	}
	firstSettled, err := p.waitSettled(time.Second, 30*time.Millisecond, 15*time.Minute)
	if err != nil {
		p.stop()
		return err
	}
	atStart := p.stats()
	logf("   %d webhooks, first start: ready in %s, settled after %s; %d fds, RSS %s",
		cfg.manyWebhooks, secs(first), secs(firstSettled), atStart.fds, mib(atStart.rssKB))

	urls := make([]string, len(keys))
	for i, k := range keys {
		urls[i] = s.url(k)
	}
	before := p.stats()
	st := runLoad(loadOpts{targeter: roundRobin(urls, jsonBody(1024)), workers: cfg.loadConn, duration: cfg.manyDuration}, nil)
	after := p.stats()
	logf("   spread ingest: %.0f/s, %s", st.okRate(), st.errorsText())
	// The same over fewer webhooks than max_open_event_dbs (256 by
	// default): every event DB stays open, so this isolates what opening
	// and evicting event DBs costs above.
	few := min(200, len(urls))
	stFew := runLoad(loadOpts{targeter: roundRobin(urls[:few], jsonBody(1024)), workers: cfg.loadConn, duration: cfg.manyDuration}, nil)
	logf("   spread ingest over %d: %.0f/s, %s", few, stFew.okRate(), stFew.errorsText())
	p.stop()

	// Restart on the same data dir: every event DB exists; the engine's
	// recovery scan reads each one.
	p, again, err := e.start(dir, s, last, 30*time.Minute)
	if err != nil {
		return err
	}
	defer p.stop()
	againSettled, err := p.waitSettled(time.Second, 30*time.Millisecond, 15*time.Minute)
	if err != nil {
		return err
	}
	restarted := p.stats()
	logf("   restart: ready in %s, settled after %s; %d fds, RSS %s", secs(again), secs(againSettled), restarted.fds, mib(restarted.rssKB))

	r.row("webhooks declared", "%d (each: 1 entrypoint, 1 database target)", cfg.manyWebhooks)
	r.row("first start (creates the event DBs)", "ready in %s (POST to the last webhook answered 200), settled after %s; %d fds, RSS %s",
		secs(first), secs(firstSettled), atStart.fds, mib(atStart.rssKB))
	r.row("restart (recovery scan of every DB)", "ready in %s, settled after %s; %d fds, RSS %s",
		secs(again), secs(againSettled), restarted.fds, mib(restarted.rssKB))
	r.row(fmt.Sprintf("ingest spread over all, %d conns", cfg.loadConn), "%.0f req/s, p50 %s, p99 %s, %s; %d requests ≈ %.1f per webhook",
		st.okRate(), ms(st.quantile(0.5)), ms(st.quantile(0.99)), st.errorsText(), st.Sent, float64(st.Sent)/float64(cfg.manyWebhooks))
	r.row(fmt.Sprintf("ingest spread over %d (all stay open)", few), "%.0f req/s, p50 %s, p99 %s, %s",
		stFew.okRate(), ms(stFew.quantile(0.5)), ms(stFew.quantile(0.99)), stFew.errorsText())
	r.row("after the spread ingest", "%d fds, RSS %s, peak %s; %.2f cores during it", after.fds, mib(after.rssKB), mib(after.hwmKB), cores(before, after))
	if st.HTTPErrors+stFew.HTTPErrors > 0 {
		r.fail("spread ingest got non-200 answers: %s; over %d: %s", st.errorsText(), few, stFew.errorsText())
	}
	r.fig("webhooks", cfg.manyWebhooks)
	r.fig("first_ready_s", round(first.Seconds(), 2))
	r.fig("first_settled_s", round(firstSettled.Seconds(), 2))
	r.fig("first_fds", atStart.fds)
	r.fig("first_rss_mib", round(mibf(atStart.rssKB), 1))
	r.fig("restart_ready_s", round(again.Seconds(), 2))
	r.fig("restart_settled_s", round(againSettled.Seconds(), 2))
	r.fig("restart_fds", restarted.fds)
	r.fig("restart_rss_mib", round(mibf(restarted.rssKB), 1))
	st.figures(r, "spread_")
	stFew.figures(r, "spread_few_")
	r.fig("spread_few_webhooks", few)
	r.fig("spread_fds_after", after.fds)
	r.fig("spread_rss_mib_after", round(mibf(after.rssKB), 1))
	r.fig("spread_peak_rss_mib", round(mibf(after.hwmKB), 1))
	r.fig("spread_caddy_cores", round(cores(before, after), 3))
	r.note("'settled' is when Caddy's CPU use first fell to at most 30 ms in a 1 s window after the start: the end of the recovery scan and other start-up work.")
	return nil
}
