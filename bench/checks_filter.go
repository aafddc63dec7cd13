package main

import (
	"fmt"
	"time"
)

// benchFilter is the filter of the filtered runs: it reads the body (so the
// JSON is parsed, once per event) and a header, and matches every event the
// load sends, so that both runs store the same event and delivery: the
// difference is the filter's cost alone.
const benchFilter = `body.event == "bench" && header["Content-Type"] == "application/json"`

// checkIngestFilter runs the ingest check's full-speed load, 1 KiB and
// 64 KiB bodies, against one database target without a filter and with
// benchFilter, alternating, each run on a fresh Caddy, and reports the rows
// side by side.
func checkIngestFilter(e *env, r *result) error {
	for _, size := range []int{1 << 10, 64 << 10} {
		key := map[int]string{1 << 10: "1k", 64 << 10: "64k"}[size]
		runs := map[bool]*ingestRun{}
		for _, filtered := range []bool{false, true} {
			run, err := e.ingestFilterOnce(size, filtered)
			if err != nil {
				return err
			}
			runs[filtered] = run
			name, prefix := "no filter", "nofilter_"+key+"_"
			if filtered {
				name, prefix = "filter", "filter_"+key+"_"
			}
			r.row(fmt.Sprintf("%s, ingest, %s", sizeText(size), name), "%.0f req/s, p50 %s, p99 %s, %s; caddy %.2f cores, RSS %s",
				run.st.okRate(), ms(run.st.quantile(0.5)), ms(run.st.quantile(0.99)), run.st.errorsText(), run.cores, mib(run.rssKB))
			run.st.figures(r, prefix)
			r.fig(prefix+"caddy_cores", round(run.cores, 3))
			r.fig(prefix+"rss_mib", round(mibf(run.rssKB), 1))
			if run.stored < run.st.OK {
				r.fail("%s %s: %d answers 200 but only %d events stored", sizeText(size), name, run.st.OK, run.stored)
			}
			if run.st.HTTPErrors > 0 {
				r.fail("%s %s: non-200 answers: %s", sizeText(size), name, run.st.errorsText())
			}
			// The filter matches every event: each must have its delivery.
			if got := run.states["delivered"] + run.states["pending"]; got != run.stored {
				r.fail("%s %s: %d events stored but %d deliveries", sizeText(size), name, run.stored, got)
			}
		}
		ratio := 0.0
		if runs[false].st.okRate() > 0 {
			ratio = runs[true].st.okRate() / runs[false].st.okRate()
		}
		r.row(fmt.Sprintf("%s, filter ÷ no filter", sizeText(size)), "%.2f", ratio)
		r.fig("filter_ratio_"+key, round(ratio, 3))
	}
	r.note("as the ingest check (vegeta rate 0, %d connections, %s per run, fresh Caddy and data_dir per run, synchronous full), with one database target: without a filter, then with `filter %s`, which parses the JSON body and matches every event, so both runs store the same rows.",
		e.cfg.loadConn, e.cfg.ingestDuration, benchFilter)
	return nil
}

func (e *env) ingestFilterOnce(size int, filtered bool) (*ingestRun, error) {
	dir := e.dir("ingest-filter")
	s := newSite(dir)
	s.options = []string{"max_body_size 1MiB"}
	target := "target archive database"
	if filtered {
		target += " {\n\tfilter " + benchFilter + "\n}"
	}
	s.webhooks = webhook("bench", "bench", target)
	p, _, err := e.start(dir, s, "bench", time.Minute)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	time.Sleep(300 * time.Millisecond) // let the start-up settle a little, as checkIngest does
	before := p.stats()
	st := runLoad(loadOpts{
		targeter: staticTarget(s.url("bench"), jsonBody(size)),
		workers:  e.cfg.loadConn, duration: e.cfg.ingestDuration,
	}, nil)
	after := p.stats()
	run := &ingestRun{size: size, st: st, cores: cores(before, after), rssKB: after.rssKB}
	if err := run.readStored(p, s.dataDir); err != nil {
		return nil, err
	}
	logf("   %s ingest, filter %v: %.0f req/s, p50 %s, p99 %s, %s", sizeText(size), filtered, st.okRate(),
		ms(st.quantile(0.5)), ms(st.quantile(0.99)), st.errorsText())
	return run, nil
}
