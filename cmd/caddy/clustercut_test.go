package main

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// What the tests of a node cut off from the others (frozen, or partitioned)
// share: a change made by the majority meanwhile, what was owed delivered
// by the majority alone, everything delivered after the heal, and the
// node's rejoining.

// cutScene is a three-node cluster under load, with the node to cut off:
// the one that applied the most (it owns partitions, whose events are
// delivered only if the others take them over).
type cutScene struct {
	target *seqTarget
	nodes  []*clusterNode
	load   *clusterLoad
	// victimAt is the index of victim in nodes; others are the two
	// others; applied is how many messages victim had applied.
	victimAt int
	victim   *clusterNode
	others   []*clusterNode
	applied  float64
}

// startCutScene starts the cluster (its routes through pn's proxies, nil
// for none) and its load, and picks the victim after 3 s of load.
func startCutScene(t *testing.T, pn *partitionNet) *cutScene {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs three caddy processes")
	}
	s := &cutScene{target: newSeqTarget(t, 2*time.Millisecond)}
	s.nodes = startClusterNodesOn(t, buildCaddy(t), s.target.url, fastRetries, pn)
	if pn != nil {
		for _, n := range s.nodes {
			if pn.carried(n.name) == 0 {
				t.Fatalf("no route of %s goes through the proxies: the cut would not cut it", n.name)
			}
		}
	}
	s.load = startClusterLoad(t, s.nodes, 3)
	time.Sleep(3 * time.Second)
	s.victimAt, s.applied = busiest(t, s.nodes)
	s.victim = s.nodes[s.victimAt]
	s.others = slices.Delete(slices.Clone(s.nodes), s.victimAt, s.victimAt+1)
	return s
}

// majority is what the two others did while the victim was cut off.
type majority struct {
	// madeID is the webhook they made, applied the configuration log's
	// place then; owed the events acknowledged in the cut's first 20 s,
	// all delivered delivered after the cut began, takenOver the
	// messages they had taken over from the victim by then.
	madeID    string
	applied   uint64
	owed      int
	delivered time.Duration
	takenOver float64
}

// majorityGoesOn shows that the two others go on without the victim, cut
// off at cutAt: they take a configuration change (once the stream has a
// leader among them: 503 until then), and deliver every event acknowledged
// in the cut's first 20 s (the victim's unfinished messages included,
// handed out again after the stream's ack wait, 30 s).
func (s *cutScene) majorityGoesOn(t *testing.T, cutAt time.Time) majority {
	t.Helper()
	var m majority
	m.madeID = makeWebhookOn(t, s.others[0], "made-while-cut-off")
	m.applied = converged(t, s.others)
	time.Sleep(time.Until(cutAt.Add(20 * time.Second)))
	m.owed = deliverOwed(t, s.load, s.target, s.others)
	m.delivered = time.Since(cutAt)
	m.takenOver = metricSum(t, s.others, "taken_over")
	return m
}

// makeWebhookOn makes a webhook through n's API, waiting until n's side
// of the cluster takes configuration changes (503 while the configuration
// stream has no leader there), and returns its id.
func makeWebhookOn(t *testing.T, n *clusterNode, name string) string {
	t.Helper()
	var made struct {
		ID string `json:"id"`
	}
	waitUntil(t, 60*time.Second, func() bool {
		return n.api(t, "POST", "/webhooks", map[string]any{"name": name}, &made) == http.StatusCreated
	}, func() string {
		return n.name + "'s side of the cluster did not take a configuration change:\n" + n.logs.String()
	})
	return made.ID
}

// deliverOwed waits until every event acknowledged so far is delivered,
// and returns how many that is. Called while a node is cut off, it shows
// that the others deliver what that node had not.
func deliverOwed(t *testing.T, load *clusterLoad, target *seqTarget, others []*clusterNode) int {
	t.Helper()
	var owed []int
	load.acked.Range(func(k, _ any) bool {
		owed = append(owed, k.(int))
		return true
	})
	undelivered := func() int {
		n := 0
		for _, seq := range owed {
			if target.count(seq) == 0 {
				n++
			}
		}
		return n
	}
	waitUntil(t, 2*time.Minute, func() bool { return undelivered() == 0 }, func() string {
		return fmt.Sprintf("%d of the %d events acknowledged so far never delivered by the nodes not cut off:\n%s",
			undelivered(), len(owed), others[0].logs.String())
	})
	return len(owed)
}

// deliverAll waits until every acknowledged event is delivered (the load
// halted), and returns the duplicate deliveries.
func deliverAll(t *testing.T, load *clusterLoad, target *seqTarget, victim *clusterNode) int {
	t.Helper()
	missing := func() []int { return target.missing(&load.acked) }
	waitUntil(t, 3*time.Minute, func() bool { return len(missing()) == 0 }, func() string {
		m := missing()
		return fmt.Sprintf("%d of %d acknowledged events never delivered (first: %v)\n%s:\n%s", len(m), load.nAcked.Load(),
			m[:min(10, len(m))], victim.name, victim.logs.String())
	})
	duplicates := 0
	load.acked.Range(func(k, _ any) bool {
		duplicates += target.count(k.(int)) - 1
		return true
	})
	return duplicates
}

// metricSum adds up caddy_webhooker_cluster_messages_total{kind} over nodes.
func metricSum(t *testing.T, nodes []*clusterNode, kind string) float64 {
	t.Helper()
	var sum float64
	for _, n := range nodes {
		sum += n.metric(t, `caddy_webhooker_cluster_messages_total{kind="`+kind+`",node="`+n.name+`"}`)
	}
	return sum
}

// rejoined checks that victim, cut off and back, is routed to both others,
// applied the configuration made without it (up to applied, webhook
// madeID among it), and delivers the events it acknowledges.
func rejoined(t *testing.T, victim *clusterNode, applied uint64, madeID string, load *clusterLoad, target *seqTarget) {
	t.Helper()
	waitUntil(t, 90*time.Second, func() bool {
		return victim.metric(t, "caddy_webhooker_cluster_routes") == 2 && victim.metric(t, "caddy_webhooker_cluster_node_up") == 1 &&
			victim.configApplied(t) >= applied
	}, func() string { return victim.name + " did not rejoin:\n" + victim.logs.String() })
	if st := victim.api(t, "GET", "/webhooks/"+madeID, nil, nil); st != http.StatusOK {
		t.Fatalf("the webhook made while %s was cut off: %d there", victim.name, st)
	}
	// Routed again, it may answer 503 a moment more (JetStream's interest
	// across the new routes, the stream's catch-up): as at a start.
	victim.waitReady(t)
	base := int(load.next.Load()) + 1000
	for k := range 30 {
		seq := base + k
		resp, err := load.client.Post(victim.g.hooks+fmt.Sprintf("key-%d", seq%clusterWebhooks), "application/json",
			strings.NewReader(fmt.Sprintf(`{"n":%d}`, seq)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("the rejoined node answered %d", resp.StatusCode)
		}
		load.acked.Store(seq, true)
	}
	waitUntil(t, 2*time.Minute, func() bool { return len(target.missing(&load.acked)) == 0 }, func() string {
		return fmt.Sprintf("%d events acknowledged by the rejoined node never delivered:\n%s", len(target.missing(&load.acked)), victim.logs.String())
	})
	t.Logf("%s rejoined: routed to 2 nodes, configuration log at %d, its 30 new events delivered", victim.name, applied)
}
