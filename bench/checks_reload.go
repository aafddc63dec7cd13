package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

const migrateReq = "/proc/sys/net/ipv4/tcp_migrate_req"

// reloadRun is one run of config reloads under load.
type reloadRun struct {
	plain    bool
	st       *loadStats
	reloads  int
	failed   int // reloads the admin API refused
	reloadMs []time.Duration
	retried  int // requests without an answer, sent again
	answered int // of those, answered 200 on a retry
	retryNon int // of those, answered non-200 on a retry
	never    int // of those, never answered
	acked    int
	lost     int // acknowledged, then not stored or not delivered
	dups     int
}

// checkReload reloads the config through the admin API (POST /load,
// text/caddyfile) under load, for webhooker and for plain respond 200.
// Requests that got no answer are sent again, as a provider would; the
// check fails on non-200 answers and on acknowledged events lost.
func checkReload(e *env, r *result) error {
	runs := []struct {
		plain   bool
		migrate bool
	}{{false, false}, {true, false}}
	orig, err := os.ReadFile(migrateReq)
	migrateNote := ""
	switch {
	case err != nil:
		migrateNote = fmt.Sprintf("%s not readable (%v): not tried", migrateReq, err)
	case strings.TrimSpace(string(orig)) != "0":
		migrateNote = fmt.Sprintf("%s is %s already: the runs above had it on", migrateReq, strings.TrimSpace(string(orig)))
	default:
		if err := os.WriteFile(migrateReq, []byte("1"), 0o644); err != nil {
			migrateNote = fmt.Sprintf("%s is 0 and not writable here (%v): runs with it on not made", migrateReq, err)
		} else {
			_ = os.WriteFile(migrateReq, orig, 0o644)
			runs = append(runs, struct{ plain, migrate bool }{false, true}, struct{ plain, migrate bool }{true, true})
		}
	}
	for _, run := range runs {
		if run.migrate {
			if err := os.WriteFile(migrateReq, []byte("1"), 0o644); err != nil {
				return err
			}
		}
		res, err := e.reloadOnce(run.plain)
		if run.migrate {
			if rerr := os.WriteFile(migrateReq, orig, 0o644); rerr != nil {
				return fmt.Errorf("restoring %s to %q: %w", migrateReq, orig, rerr)
			}
		}
		if err != nil {
			return err
		}
		name := "webhooker"
		if run.plain {
			name = "respond 200"
		}
		if run.migrate {
			name += ", tcp_migrate_req=1"
		}
		r.row(name, "%d/%d reloads ok (median %s, max %s); %d requests: %d answered 200 at once, %d non-200, %d without an answer (%s); of those %d answered 200 on retry, %d non-200, %d never",
			res.reloads-res.failed, res.reloads, ms(quantile(res.reloadMs, 0.5)), ms(quantile(res.reloadMs, 1)),
			res.st.Sent, res.st.OK, res.st.HTTPErrors, res.st.ConnErrors, errKinds(res.st), res.answered, res.retryNon, res.never)
		if !run.plain {
			r.row(name+": events", "%d acknowledged, %d lost (not stored or not delivered), %d duplicate deliveries", res.acked, res.lost, res.dups)
		}
		key := map[bool]string{true: "plain", false: "webhooker"}[run.plain] + map[bool]string{true: "_migrate", false: ""}[run.migrate] + "_"
		res.st.figures(r, key)
		r.fig(key+"reloads_failed", res.failed)
		r.fig(key+"retried", res.retried)
		r.fig(key+"retried_ok", res.answered)
		r.fig(key+"retried_non_200", res.retryNon)
		r.fig(key+"never_answered", res.never)
		r.fig(key+"acked", res.acked)
		r.fig(key+"lost", res.lost)
		switch {
		case res.failed > 0:
			r.fail("%s: %d reloads refused by the admin API", name, res.failed)
		case res.st.HTTPErrors+res.retryNon > 0:
			r.fail("%s: %d non-200 answers during reloads", name, res.st.HTTPErrors+res.retryNon)
		case res.never > 0:
			r.fail("%s: %d requests never answered even after retries", name, res.never)
		case res.lost > 0:
			r.fail("%s: %d acknowledged events lost", name, res.lost)
		}
	}
	if migrateNote != "" {
		r.note("%s", migrateNote)
	} else {
		r.note("%s was 0; set to 1 for the tcp_migrate_req runs only, then restored to 0", migrateReq)
	}
	r.note("a request without an answer (connection reset or refused while listeners are swapped) is sent again, up to 50 times 100 ms apart, like a provider's retry; it counts against the check only if it is never answered, answered non-200, or acknowledged and then lost.")
	return nil
}

func errKinds(st *loadStats) string {
	var parts []string
	for k, n := range st.Errors {
		parts = append(parts, fmt.Sprintf("%d %s", n, k))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func (e *env) reloadOnce(plain bool) (*reloadRun, error) {
	cfg := e.cfg
	rc, err := newReceiver(nil)
	if err != nil {
		return nil, err
	}
	defer rc.close()
	dir := e.dir("reload")
	s := newSite(dir)
	s.plain = plain
	version := func(i int) site {
		v := s
		v.extra = []string{fmt.Sprintf("header X-Config-Version %d", i)}
		v.webhooks = webhook("reload", "reload", fmt.Sprintf("description \"config version %d\"", i),
			httpTarget("sink", rc.URL), "target archive database")
		return v
	}
	p, _, err := e.start(dir, version(0), "reload", time.Minute)
	if err != nil {
		return nil, err
	}
	defer p.stop()

	run := &reloadRun{plain: plain}
	a := newAcks()
	var mu sync.Mutex
	var retrying sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	body := jsonBody(1024)
	resend := func() {
		defer retrying.Done()
		for range 50 {
			time.Sleep(100 * time.Millisecond)
			resp, err := client.Post(s.url("reload"), "application/json", bytes.NewReader(body))
			if err != nil {
				continue
			}
			var buf bytes.Buffer
			_, _ = buf.ReadFrom(resp.Body)
			resp.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			if resp.StatusCode != http.StatusOK {
				run.retryNon++
				return
			}
			run.answered++
			a.add(&vegeta.Result{Code: 200, Body: buf.Bytes(), Timestamp: time.Now()})
			return
		}
		mu.Lock()
		run.never++
		mu.Unlock()
	}
	each := func(res *vegeta.Result) {
		a.add(res)
		if res.Code == 0 {
			run.retried++
			retrying.Add(1)
			go resend()
		}
	}
	stop := make(chan struct{})
	done := make(chan *loadStats)
	go func() {
		done <- runLoad(loadOpts{
			targeter: staticTarget(s.url("reload"), body),
			rate:     cfg.reloadRate, workers: cfg.loadConn, timeout: 10 * time.Second, stop: stop,
		}, each)
	}()
	time.Sleep(time.Second)
	for i := 1; i <= cfg.reloads; i++ {
		started := time.Now()
		if err := load(s.admin, version(i).caddyfile()); err != nil {
			run.failed++
			logf("   reload %d: %v", i, err)
		}
		run.reloadMs = append(run.reloadMs, time.Since(started))
		run.reloads++
		time.Sleep(cfg.reloadPeriod)
	}
	time.Sleep(time.Second)
	close(stop)
	run.st = <-done
	retrying.Wait()
	ids := a.list()
	run.acked = len(ids)
	if !plain {
		missing := rc.waitDelivered(ids, cfg.drainTimeout)
		stored, err := storedEvents(s.dataDir, "reload")
		if err != nil {
			return nil, err
		}
		notStored := 0
		for _, id := range ids {
			if !stored[id] {
				notStored++
			}
		}
		run.lost = max(len(missing), notStored)
		run.dups = rc.counts().dups
	}
	kind := map[bool]string{true: "respond 200", false: "webhooker"}[plain]
	mig, _ := os.ReadFile(migrateReq)
	logf("   %s (tcp_migrate_req=%s): %d reloads (%d refused); %d requests, %d no answer, %d non-200; retried: %d ok, %d never; %d acked, %d lost",
		kind, strings.TrimSpace(string(mig)), run.reloads, run.failed, run.st.Sent, run.st.ConnErrors, run.st.HTTPErrors,
		run.answered, run.never, run.acked, run.lost)
	return run, nil
}
