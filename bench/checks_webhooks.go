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

// checkMany declares many webhooks and measures: the first start (fresh
// data_dir), one event to every webhook (spread round-robin, so each event
// DB is opened, or created, in turn), a spread over fewer webhooks than
// max_open_event_dbs, a restart (the recovery scan reads every event DB),
// and a timed spread over all of them again.
func checkMany(e *env, r *result) error {
	cfg := e.cfg
	dir := e.dir("many")
	s := newSite(dir)
	var keys []string
	s.webhooks, keys = manyWebhooks(cfg.manyWebhooks)
	last := keys[len(keys)-1]
	urls := make([]string, len(keys))
	for i, k := range keys {
		urls[i] = s.url(k)
	}
	body := jsonBody(1024)
	spread := func(urls []string, count int) *loadStats {
		o := loadOpts{targeter: roundRobin(urls, body), workers: cfg.loadConn, duration: cfg.manyDuration}
		if count > 0 {
			o.duration, o.count = 0, count
		}
		return runLoad(o, nil)
	}

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

	before := p.stats()
	stEach := spread(urls, len(urls))
	afterEach := p.stats()
	logf("   one event to each webhook: %.0f/s, %s", stEach.okRate(), stEach.errorsText())
	// Fewer webhooks than max_open_event_dbs (256 by default): every event
	// DB stays open, which isolates what opening and evicting them costs.
	few := min(200, len(urls))
	stFew := spread(urls[:few], 0)
	logf("   spread over %d: %.0f/s, %s", few, stFew.okRate(), stFew.errorsText())
	p.stop()

	// Restart on the same data_dir: every webhook has an event DB now, and
	// the engine's recovery scan reads each one.
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
	stAll := spread(urls, 0)
	afterAll := p.stats()
	logf("   spread over all: %.0f/s, %s", stAll.okRate(), stAll.errorsText())

	spreadRow := func(st *loadStats) string {
		return fmt.Sprintf("%.0f req/s, p50 %s, p99 %s, %s", st.okRate(), ms(st.quantile(0.5)), ms(st.quantile(0.99)), st.errorsText())
	}
	r.row("webhooks declared", "%d (each: 1 entrypoint, 1 database target), fresh data_dir", cfg.manyWebhooks)
	r.row("first start", "ready in %s (POST to the last webhook answered 200), settled after %s; %d fds, RSS %s",
		secs(first), secs(firstSettled), atStart.fds, mib(atStart.rssKB))
	r.row("one event to each webhook", "%s; %d requests in %.1f s; then %d fds, RSS %s, peak %s; %.2f cores",
		spreadRow(stEach), stEach.Sent, stEach.seconds(), afterEach.fds, mib(afterEach.rssKB), mib(afterEach.hwmKB), cores(before, afterEach))
	r.row(fmt.Sprintf("spread over %d webhooks (all stay open)", few), "%s, for %s", spreadRow(stFew), cfg.manyDuration)
	r.row("restart (recovery scan of every DB)", "ready in %s, settled after %s; %d fds, RSS %s",
		secs(again), secs(againSettled), restarted.fds, mib(restarted.rssKB))
	r.row(fmt.Sprintf("spread over all %d after restart", cfg.manyWebhooks), "%s, for %s; then %d fds, RSS %s, peak %s",
		spreadRow(stAll), cfg.manyDuration, afterAll.fds, mib(afterAll.rssKB), mib(afterAll.hwmKB))
	if n := stEach.HTTPErrors + stFew.HTTPErrors + stAll.HTTPErrors; n > 0 {
		r.fail("spread ingest got %d non-200 answers", n)
	}
	r.fig("webhooks", cfg.manyWebhooks)
	r.fig("first_ready_s", round(first.Seconds(), 2))
	r.fig("first_settled_s", round(firstSettled.Seconds(), 2))
	r.fig("first_fds", atStart.fds)
	r.fig("first_rss_mib", round(mibf(atStart.rssKB), 1))
	stEach.figures(r, "each_")
	r.fig("each_fds_after", afterEach.fds)
	r.fig("each_rss_mib_after", round(mibf(afterEach.rssKB), 1))
	stFew.figures(r, "few_")
	r.fig("few_webhooks", few)
	r.fig("restart_ready_s", round(again.Seconds(), 2))
	r.fig("restart_settled_s", round(againSettled.Seconds(), 2))
	r.fig("restart_fds", restarted.fds)
	r.fig("restart_rss_mib", round(mibf(restarted.rssKB), 1))
	stAll.figures(r, "all_")
	r.fig("all_fds_after", afterAll.fds)
	r.fig("all_rss_mib_after", round(mibf(afterAll.rssKB), 1))
	r.fig("peak_rss_mib", round(mibf(afterAll.hwmKB), 1))
	r.note("'settled' is when Caddy's CPU use first fell to at most 30 ms in a 1 s window after the start: the end of the recovery scan and other start-up work. Spread ingest is round-robin over the webhooks' entrypoints with %d connections at full speed, 1 KiB bodies.", cfg.loadConn)
	return nil
}
