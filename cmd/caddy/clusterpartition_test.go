package main

import (
	"net/http"
	"testing"
	"time"
)

// TestClusterPartitionedNodeAcknowledgesNothing cuts one node of three off
// the others' network while it runs and answers (its routes go through
// proxies, partitionNet): load goes on at all three. The cut-off node
// acknowledges no ingest sent to it after the cut and makes no
// configuration change: it has no majority to store them with. The two
// others go on: they take ingests and a configuration change, and deliver
// what the cut-off node had not. After the heal, every acknowledged event
// is delivered (duplicates counted), and the node rejoins.
func TestClusterPartitionedNodeAcknowledgesNothing(t *testing.T) {
	pn := newPartitionNet(t)
	sc := startCutScene(t, pn)
	load, target, victim, victimAt, others := sc.load, sc.target, sc.victim, sc.victimAt, sc.others
	refusedBefore, unavailableBefore := load.refusedBy[victimAt].Load(), load.unavailableBy[victimAt].Load()
	pn.cutOff(victim.name)
	load.sealedAt[victimAt].Store(time.Now().UnixNano())
	load.mark()
	cutAt := time.Now()

	// Cut off and running: it knows it is alone, and refuses a change.
	waitUntil(t, 30*time.Second, func() bool { return victim.metric(t, "caddy_webhooker_cluster_routes") == 0 },
		func() string {
			return victim.name + " still routed to the others after the cut:\n" + victim.logs.String()
		})
	if st := victim.api(t, "POST", "/webhooks", map[string]any{"name": "made-on-the-cut-off-node"}, nil); st != http.StatusServiceUnavailable {
		t.Errorf("a configuration change on the cut-off node: %d, want 503", st)
	}
	m := sc.majorityGoesOn(t, cutAt)
	refusedWhileCut := load.refusedBy[victimAt].Load() - refusedBefore
	unavailableWhileCut := load.unavailableBy[victimAt].Load() - unavailableBefore

	// Healed.
	pn.heal(victim.name)
	ackedWhileCut := load.ackedWhileSealed[victimAt].Load()
	load.sealedAt[victimAt].Store(0)
	healedAt := time.Now()
	time.Sleep(5 * time.Second)
	load.halt()
	duplicates := deliverAll(t, load, target, victim)

	if ackedWhileCut != 0 {
		t.Errorf("the cut-off node acknowledged %d events sent to it after the cut: it had no majority to store them with", ackedWhileCut)
	}
	if unavailableWhileCut == 0 || load.ackedSinceMark.Load() == 0 {
		t.Fatalf("the cut did not show: the cut-off node answered %d ingests 503, the others acknowledged %d",
			unavailableWhileCut, load.ackedSinceMark.Load())
	}
	t.Logf("cut %s off for %s (it had applied %.0f messages); while cut off it answered %d ingests with an error (%d of them 503) and acknowledged %d, and the two others acknowledged %d; the %d events acknowledged in the cut's first 20 s were all delivered %s into it (%.0f messages taken over by the two others); acknowledged %d in all; all delivered %s after the heal, %d duplicate deliveries, %.0f messages taken over",
		victim.name, healedAt.Sub(cutAt).Round(time.Second), sc.applied, refusedWhileCut, unavailableWhileCut, ackedWhileCut, load.ackedSinceMark.Load(), m.owed,
		m.delivered.Round(time.Second), m.takenOver, load.nAcked.Load(), time.Since(healedAt).Round(time.Second), duplicates,
		metricSum(t, others, "taken_over"))
	rejoined(t, victim, m.applied, m.madeID, load, target)
}
