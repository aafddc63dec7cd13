package main

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// checkCrash ingests under load, SIGKILLs Caddy at a random moment,
// restarts it on the same data_dir and checks that every event that got a
// 200 is stored and reaches the target at least once; cfg.crashRounds times.
func checkCrash(e *env, r *result) error {
	cfg := e.cfg
	// A slow target and few workers, so that deliveries are owed at the kill
	// and recovery has work to do.
	rc, err := newReceiver(func(rc *receiver) { rc.delay = 5 * time.Millisecond })
	if err != nil {
		return err
	}
	defer rc.close()
	dir := e.dir("crash")
	s := newSite(dir)
	s.options = []string{"workers 2"}
	s.webhooks = webhook("crash", "crash",
		httpTarget("sink", rc.URL, "max_retries 50", "backoff 20ms 200ms"),
		"target archive database")
	p, _, err := e.start(dir, s, "crash", time.Minute)
	if err != nil {
		return err
	}
	defer func() { p.stop() }()

	a := newAcks()
	var totalLost, totalOwed, totalAcked int
	for round := 1; round <= cfg.crashRounds; round++ {
		before := int(a.n.Load())
		stop := make(chan struct{})
		done := make(chan *loadStats)
		go func() {
			done <- runLoad(loadOpts{
				targeter: staticTarget(s.url("crash"), jsonBody(1024)),
				rate:     cfg.crashRate, workers: cfg.loadConn, timeout: 5 * time.Second, stop: stop,
			}, a.add)
		}()
		after := time.Duration(500+rand.IntN(2500)) * time.Millisecond
		time.Sleep(after)
		p.kill()
		close(stop)
		st := <-done
		ids := a.list()
		acked := len(ids) - before
		owed := len(rc.missing(ids))

		var ready time.Duration
		p, ready, err = e.start(dir, s, "crash", time.Minute)
		if err != nil {
			return fmt.Errorf("round %d: restart: %w", round, err)
		}
		started := time.Now()
		missing := rc.waitDelivered(ids, cfg.drainTimeout)
		drained := time.Since(started)
		stored, err := storedEvents(s.dataDir, "crash")
		if err != nil {
			return fmt.Errorf("round %d: reading the event DB: %w", round, err)
		}
		notStored := 0
		for _, id := range ids {
			if !stored[id] {
				notStored++
			}
		}
		lost := max(len(missing), notStored)
		totalLost += lost
		totalOwed += owed
		totalAcked += acked
		verdict := "0 lost"
		if lost > 0 {
			verdict = fmt.Sprintf("LOST %d (%d not stored, %d not delivered)", lost, notStored, len(missing))
			r.fail("round %d: %d acknowledged events not stored, %d not delivered within %s", round, notStored, len(missing), cfg.drainTimeout)
		}
		r.row(fmt.Sprintf("round %d: SIGKILL after %s", round, secs(after)),
			"%d acked this round (%d sent, %d no answer); %d owed to the target at the kill; restart ready in %s; all %d acked so far stored, delivered %s after restart: %s",
			acked, st.Sent, st.ConnErrors, owed, secs(ready), len(ids), secs(drained), verdict)
		logf("   round %d: killed after %s, %d acked, %d owed; restart ready in %s, drained in %s, %s",
			round, secs(after), acked, owed, secs(ready), secs(drained), verdict)
		if owed == 0 {
			r.note("round %d: every acknowledged event had been delivered before the kill: recovery was not exercised in that round", round)
		}
	}
	states, _ := deliveryStates(s.dataDir, "crash")
	rcv := rc.counts()
	r.row("total", "%d acked over %d rounds, %d owed at the kills, %d lost; %d duplicate deliveries (at-least-once); deliveries now %v",
		totalAcked, cfg.crashRounds, totalOwed, totalLost, rcv.dups, states)
	r.fig("rounds", cfg.crashRounds)
	r.fig("acked", totalAcked)
	r.fig("owed_at_kill", totalOwed)
	r.fig("lost", totalLost)
	r.fig("duplicates", rcv.dups)
	r.note("target answers after 5 ms, 'workers 2', an http target (max_retries 50, backoff 20ms 200ms) and a database target; load %d/s; Caddy restarted on the same data_dir after each kill.", cfg.crashRate)
	return nil
}
