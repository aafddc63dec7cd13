package main

import (
	"fmt"
	"time"
)

// ingestRun is one full-speed run against one fresh Caddy.
type ingestRun struct {
	plain bool
	size  int
	st    *loadStats
	cores float64
	rssKB uint64
	// stored is the number of events in the event DB after the run
	// (ingest runs only).
	stored int
	// states counts the deliveries by status once Caddy has stopped.
	states map[string]int
}

// readStored stops p, then reads what webhook "bench" stored: its events
// and its deliveries by status (the event DB is read once Caddy has let go
// of it).
func (run *ingestRun) readStored(p *caddyProc, dataDir string) error {
	p.stop()
	ids, err := storedEvents(dataDir, "bench")
	if err != nil {
		return err
	}
	run.stored = len(ids)
	run.states, err = deliveryStates(dataDir, "bench")
	return err
}

// checkIngest runs, for 1 KiB and 64 KiB bodies, the same full-speed load
// (cfg.loadConn connections, no rate limit) against the same binary
// answering `respond 200` on the route and against webhooker ingest with
// one database target, and reports them side by side.
func checkIngest(e *env, r *result) error {
	cfg := e.cfg
	for _, size := range []int{1 << 10, 64 << 10} {
		var plain, ingest *ingestRun
		for _, isPlain := range []bool{true, false} {
			run, err := e.ingestOnce(isPlain, size)
			if err != nil {
				return err
			}
			if isPlain {
				plain = run
			} else {
				ingest = run
			}
		}
		label := sizeText(size)
		ratio := 0.0
		if plain.st.okRate() > 0 {
			ratio = ingest.st.okRate() / plain.st.okRate()
		}
		for _, run := range []*ingestRun{plain, ingest} {
			name := "respond 200"
			if !run.plain {
				name = "webhooker ingest"
			}
			r.row(fmt.Sprintf("%s, %s", label, name), "%.0f req/s, p50 %s, p99 %s, %s; caddy %.2f cores, RSS %s",
				run.st.okRate(), ms(run.st.quantile(0.5)), ms(run.st.quantile(0.99)), run.st.errorsText(), run.cores, mib(run.rssKB))
			prefix := fmt.Sprintf("%s_%s_", map[bool]string{true: "plain", false: "ingest"}[run.plain], map[int]string{1 << 10: "1k", 64 << 10: "64k"}[size])
			run.st.figures(r, prefix)
			r.fig(prefix+"caddy_cores", round(run.cores, 3))
			r.fig(prefix+"rss_mib", round(mibf(run.rssKB), 1))
		}
		r.row(fmt.Sprintf("%s, ingest ÷ respond", label), "%.2f (stored %d events for %d answers 200; database deliveries when Caddy stopped: %d delivered, %d pending)",
			ratio, ingest.stored, ingest.st.OK, ingest.states["delivered"], ingest.states["pending"])
		key := map[int]string{1 << 10: "1k", 64 << 10: "64k"}[size]
		r.fig("ratio_"+key, round(ratio, 3))
		r.fig("ingest_"+key+"_delivered_at_stop", ingest.states["delivered"])
		r.fig("ingest_"+key+"_pending_at_stop", ingest.states["pending"])
		if ingest.stored < ingest.st.OK {
			r.fail("%s: %d answers 200 but only %d events stored", label, ingest.st.OK, ingest.stored)
		}
		if ingest.st.HTTPErrors > 0 {
			r.fail("%s ingest got non-200 answers: %s", label, ingest.st.errorsText())
		}
	}
	r.note("vegeta with rate 0 and %d workers = %d keep-alive connections, each sending the next POST when the previous one is answered, for %s per run; each run gets a fresh Caddy (and data_dir); respond 200 runs first, then ingest (synchronous full, one database target). Load generator and Caddy share the machine's CPUs.",
		cfg.loadConn, cfg.loadConn, cfg.ingestDuration)
	return nil
}

func (e *env) ingestOnce(plain bool, size int) (*ingestRun, error) {
	dir := e.dir("ingest")
	s := newSite(dir)
	s.plain = plain
	s.options = []string{"max_body_size 1MiB"}
	s.webhooks = webhook("bench", "bench", "target archive database")
	p, _, err := e.start(dir, s, "bench", time.Minute)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	time.Sleep(300 * time.Millisecond) // let the start-up settle a little
	before := p.stats()
	st := runLoad(loadOpts{
		targeter: staticTarget(s.url("bench"), jsonBody(size)),
		workers:  e.cfg.loadConn, duration: e.cfg.ingestDuration,
	}, nil)
	after := p.stats()
	run := &ingestRun{plain: plain, size: size, st: st, cores: cores(before, after), rssKB: after.rssKB}
	kind := "respond 200"
	if !plain {
		kind = "ingest"
		if err := run.readStored(p, s.dataDir); err != nil {
			return nil, err
		}
	}
	logf("   %s %s: %.0f req/s, p50 %s, p99 %s, %s", sizeText(size), kind, st.okRate(),
		ms(st.quantile(0.5)), ms(st.quantile(0.99)), st.errorsText())
	return run, nil
}
