package main

import (
	"syscall"
	"testing"
	"time"
)

// TestClusterFrozenNodeIsCutOffAndRejoins cuts one node of three off with
// SIGSTOP, the harshest partition: its connections stay open, it answers
// nothing, and it comes back with the state it had (what it applied, the
// deliveries it had begun, the partitions it thought it owned). Load goes
// on at the two others, which take its partitions and its unfinished
// messages and change the configuration meanwhile. After SIGCONT: every
// acknowledged event is delivered (duplicates counted), and the frozen node
// rejoins: routed to both, the change made without it applied, its own
// ingests delivered.
func TestClusterFrozenNodeIsCutOffAndRejoins(t *testing.T) {
	sc := startCutScene(t, nil)
	load, target, victim, victimAt, others := sc.load, sc.target, sc.victim, sc.victimAt, sc.others
	heldAtFreeze := victim.metric(t, "caddy_webhooker_cluster_held_messages")
	load.skip.Store(int64(victimAt + 1)) // nobody answers there
	load.mark()
	if err := victim.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozeAt := time.Now()

	// Cut off: the two others take the frozen node's partitions (its pin
	// lapses after 15 s) and its unfinished messages, while it is frozen.
	m := sc.majorityGoesOn(t, frozeAt)

	// Healed.
	if err := victim.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	load.skip.Store(0)
	healedAt := time.Now()
	time.Sleep(5 * time.Second)
	load.halt()

	duplicates := deliverAll(t, load, target, victim)
	if load.ackedSinceMark.Load() == 0 || m.takenOver == 0 {
		t.Fatalf("the cut did not show: %d events acknowledged while cut off, %v messages taken over from the frozen node",
			load.ackedSinceMark.Load(), m.takenOver)
	}
	takenOver := metricSum(t, others, "taken_over")
	// The frozen node noticed that it stood still, and left to the new
	// owners what it had received under the pins it lost meanwhile.
	stalls := victim.metric(t, `caddy_webhooker_cluster_stalls_total{node="`+victim.name+`"}`)
	if stalls < 1 {
		t.Errorf("%s stood still for %s and counted %.0f stalls", victim.name, healedAt.Sub(frozeAt).Round(time.Second), stalls)
	}
	stale := victim.metric(t, `caddy_webhooker_cluster_messages_total{kind="stale",node="`+victim.name+`"}`)
	t.Logf("froze %s for %s (it had applied %.0f messages and awaited the deliveries of %.0f); the %d events acknowledged in the cut's first 20 s were all delivered by the two others %s into it (%.0f messages taken over from it by then); acknowledged %d in all (%d while it was cut off; %d refused or unanswered); all delivered %s after the heal, %d duplicate deliveries, %.0f messages taken over; on resuming it noticed %.0f stall and left alone %.0f messages received under pins lost meanwhile",
		victim.name, healedAt.Sub(frozeAt).Round(time.Second), sc.applied, heldAtFreeze, m.owed, m.delivered.Round(time.Second), m.takenOver,
		load.nAcked.Load(), load.ackedSinceMark.Load(), load.nRefused.Load(), time.Since(healedAt).Round(time.Second), duplicates, takenOver, stalls, stale)
	rejoined(t, victim, m.applied, m.madeID, load, target)
}
