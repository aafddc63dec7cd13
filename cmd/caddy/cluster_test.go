package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// clusterNode is one Caddy process of a three-node cluster.
type clusterNode struct {
	name string
	g    *binaryGateway
	cmd  *exec.Cmd
	logs *bytes.Buffer
}

// clusterWebhooks is how many webhooks the load spreads over: enough for
// the partitions to land on every node.
const clusterWebhooks = 12

// fastRetries are the target options of the kill test: deliveries owed at
// the kill are retried soon after.
const fastRetries = "max_retries 50\n\t\t\t\tbackoff 20ms 200ms"

// startClusterNodes writes three Caddyfiles, routed to each other, with the
// same webhooks, each delivering to target with targetOptions, and starts
// the three.
func startClusterNodes(t *testing.T, bin, target, targetOptions string) []*clusterNode {
	t.Helper()
	return startClusterNodesOn(t, bin, target, targetOptions, nil)
}

// startClusterNodesOn is startClusterNodes with the routes through pn's
// proxies (nil for none): each node advertises its proxy, and the others
// route to it.
func startClusterNodesOn(t *testing.T, bin, target, targetOptions string, pn *partitionNet) []*clusterNode {
	t.Helper()
	listens, routes := []string{}, []string{}
	for i := range 3 {
		listens = append(listens, fmt.Sprintf("127.0.0.1:%d", freePort(t)))
		if pn == nil {
			routes = append(routes, listens[i])
		} else {
			routes = append(routes, pn.proxy(fmt.Sprintf("n%d", i+1), listens[i]))
		}
	}
	var hooks strings.Builder
	for w := range clusterWebhooks {
		fmt.Fprintf(&hooks, `		webhook w%d {
			entrypoint key-%d
			target sink http %s {
				%s
			}
		}
`, w, w, target, targetOptions)
	}
	nodes := make([]*clusterNode, 3)
	for i := range nodes {
		var others []string
		for j, r := range routes {
			if j != i {
				others = append(others, r)
			}
		}
		name := fmt.Sprintf("n%d", i+1)
		dir := filepath.Join(t.TempDir(), name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		advertise := ""
		if pn != nil {
			advertise = "cluster_advertise " + routes[i]
		}
		g := newBinaryGateway(t, bin, dir, fmt.Sprintf(`		cluster {
			node %s
			listen 127.0.0.1:%d
			cluster_listen %s
			%s
			routes %s
			replicas 3
		}
		target_policy {
			allow 127.0.0.1/32
		}
%s`, name, freePort(t), listens[i], advertise, strings.Join(others, " "), hooks.String()))
		nodes[i] = &clusterNode{name: name, g: g}
	}
	for _, n := range nodes {
		n.start(t)
	}
	for _, n := range nodes {
		n.waitReady(t)
	}
	return nodes
}

func (n *clusterNode) start(t *testing.T) {
	t.Helper()
	n.cmd, n.logs = n.g.start(t)
	t.Cleanup(func() {
		if n.cmd.ProcessState == nil {
			_ = n.cmd.Process.Signal(syscall.SIGKILL)
			_ = n.cmd.Wait()
		}
	})
}

// waitReady waits until the node acknowledges an event: its intake stream
// has its quorum.
func (n *clusterNode) waitReady(t *testing.T) {
	t.Helper()
	waitUntil(t, 90*time.Second, func() bool {
		resp, err := http.Post(n.g.hooks+"key-0", "application/json", strings.NewReader(`{"n":-1}`))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, func() string { return n.name + " did not acknowledge an event in 90s:\n" + n.logs.String() })
}

// metric reads one sample of the node's /metrics, -1 when absent.
func (n *clusterNode) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get(n.g.admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(?:\{[^}]*\})? ([0-9.e+-]+)$`).FindSubmatch(body)
	if m == nil {
		return -1
	}
	var v float64
	fmt.Sscan(string(m[1]), &v)
	return v
}

// TestClusterKillOneNodeLosesNoAcknowledgedEvent runs three Caddy processes
// as a cluster on loopback, loads all three at a steady rate, kills one with
// SIGKILL in the middle, and checks that the survivors deliver every event
// any node acknowledged (at least once: duplicates are counted), then that
// the killed node, restarted, rejoins: it is routed to both others again and
// its own ingests are delivered.
func TestClusterKillOneNodeLosesNoAcknowledgedEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three caddy processes")
	}
	bin := buildCaddy(t)
	// A slow target, so that deliveries are still owed at the kill.
	target := newSeqTarget(t, 2*time.Millisecond)
	nodes := startClusterNodes(t, bin, target.url, fastRetries)
	// A steady rate: 4 senders per node (about 400 events/s per node,
	// 1,200/s in all).
	const perNodeGoroutines = 4
	load := startClusterLoad(t, nodes, perNodeGoroutines)
	time.Sleep(4 * time.Second)
	// The victim is the node that applied the most: it owns partitions,
	// so the events sent to their webhooks after the kill are delivered
	// only if the survivors take them over.
	victimAt, most := busiest(t, nodes)
	victim := nodes[victimAt]
	survivors := slices.Delete(slices.Clone(nodes), victimAt, victimAt+1)
	heldAtKill := victim.metric(t, "caddy_webhooker_cluster_held_messages")
	ackedAtKill := load.nAcked.Load()
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = victim.cmd.Wait()
	load.mark()
	killedAt := time.Now()
	// Long enough for the stream's leader to be elected again among the
	// survivors, should it have been the victim.
	time.Sleep(15 * time.Second)
	load.halt()

	missing := func() []int { return target.missing(&load.acked) }
	// The killed node's unfinished messages come back after the stream's
	// ack wait (30s) and its partitions move after the pin's TTL (15s).
	waitUntil(t, 3*time.Minute, func() bool { return len(missing()) == 0 }, func() string {
		m := missing()
		return fmt.Sprintf("%d of %d acknowledged events never delivered by the survivors (first: %v)\n%s:\n%s\n%s:\n%s",
			len(m), load.nAcked.Load(), m[:min(10, len(m))], survivors[0].name, survivors[0].logs.String(), survivors[1].name, survivors[1].logs.String())
	})
	allDelivered := time.Since(killedAt)
	var delivered, duplicates int
	load.acked.Range(func(k, _ any) bool {
		delivered++
		duplicates += target.count(k.(int)) - 1
		return true
	})
	if load.nAcked.Load() < 1000 || load.ackedSinceMark.Load() == 0 {
		t.Fatalf("too little load to show anything: %d acknowledged, %d of them after the kill", load.nAcked.Load(), load.ackedSinceMark.Load())
	}
	t.Logf("acknowledged %d (%d before the kill, %d after it; %d refused or unanswered); delivered %d of them, %d duplicate deliveries; all delivered %s after the kill",
		load.nAcked.Load(), ackedAtKill, load.ackedSinceMark.Load(), load.nRefused.Load(), delivered, duplicates, allDelivered.Round(time.Second))
	var takenOver float64
	for _, n := range survivors {
		takenOver += n.metric(t, `caddy_webhooker_cluster_messages_total{kind="taken_over",node="`+n.name+`"}`)
	}
	t.Logf("killed %s, which had applied %.0f messages and awaited the deliveries of %.0f; messages taken over by the survivors (caddy_webhooker_cluster_messages_total{kind=taken_over}): %.0f",
		victim.name, most, heldAtKill, takenOver)

	// Rejoin: the killed node starts on its data directory, is routed to
	// both others again, and what it acknowledges is delivered.
	victim.start(t)
	victim.waitReady(t)
	waitUntil(t, 60*time.Second, func() bool {
		return victim.metric(t, "caddy_webhooker_cluster_routes") == 2 && victim.metric(t, "caddy_webhooker_cluster_node_up") == 1
	}, func() string { return "the restarted node did not rejoin:\n" + victim.logs.String() })
	base := int(load.next.Load()) + 1000
	for k := range 50 {
		seq := base + k
		// A sequence number's webhook is w(seq mod 12) throughout: the
		// redeliveries below find its event there.
		resp, err := load.client.Post(victim.g.hooks+fmt.Sprintf("key-%d", seq%clusterWebhooks), "application/json",
			strings.NewReader(fmt.Sprintf(`{"n":%d}`, seq)))
		if err != nil {
			t.Fatal(err)
		}
		var ack struct {
			EventID string `json:"event_id"`
		}
		err = json.NewDecoder(resp.Body).Decode(&ack)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("the rejoined node answered %d (%v)", resp.StatusCode, err)
		}
		load.acked.Store(seq, ack.EventID)
	}
	waitUntil(t, 2*time.Minute, func() bool { return len(missing()) == 0 }, func() string {
		return fmt.Sprintf("%d events acknowledged by the rejoined node never delivered:\n%s", len(missing()), victim.logs.String())
	})
	t.Logf("the restarted node rejoined (routed to 2 nodes) and its 50 new events were delivered")

	// Any node's API lists every webhook's events, whichever node applied
	// them: paged (an odd page size, so that pages end on every node's
	// events), each event once.
	want := map[string]bool{}
	load.acked.Range(func(_, id any) bool {
		want[id.(string)] = true
		return true
	})
	listed := map[string]int{}
	unanswered := 0
	for w := range clusterWebhooks {
		for _, id := range listEventsThrough(t, survivors[1], storage.DeclaredWebhookID(fmt.Sprintf("w%d", w)), 97) {
			listed[id]++
			if !want[id] && w != 0 { // key-0 also took the start-up probes
				unanswered++
			}
		}
	}
	// Stored but never acknowledged: an ingest the victim had published
	// when it was killed (its 200 died with it: at most one per sender to
	// it), or one a node answered 503 because the stream's acknowledgement
	// did not come in time (while a new leader was elected) though it
	// stored it. Either is the sender's to send again: at least once.
	var refusedByLive int64
	for i := range nodes {
		if i != victimAt {
			refusedByLive += load.refusedBy[i].Load()
		}
	}
	if bound := int64(perNodeGoroutines) + refusedByLive; int64(unanswered) > bound {
		t.Errorf("%d events listed that were never acknowledged: more than the %d ingests in flight to the victim and the %d not answered 200 by the survivors",
			unanswered, perNodeGoroutines, refusedByLive)
	}
	for id := range want {
		if listed[id] != 1 {
			t.Errorf("event %s listed %d times by %s's API", id, listed[id], survivors[1].name)
		}
	}
	t.Logf("%s's API listed all %d acknowledged events of the %d webhooks, applied on three nodes, each once; and %d stored but not acknowledged (%d answers other than 200 from nodes up)",
		survivors[1].name, len(want), clusterWebhooks, unanswered, refusedByLive)

	// The webhook list's figures add up every node's event DBs: at least
	// every event listed (one applied on two nodes counts twice).
	resp, err := http.Get(survivors[1].g.admin + "/webhooker/webhooks?stats=true")
	if err != nil {
		t.Fatal(err)
	}
	var figures struct {
		Webhooks []struct {
			Stats struct {
				Events int `json:"events"`
			} `json:"stats"`
		} `json:"webhooks"`
	}
	err = json.NewDecoder(resp.Body).Decode(&figures)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	counted := 0
	for _, w := range figures.Webhooks {
		counted += w.Stats.Events
	}
	if counted < len(listed) {
		t.Errorf("the webhook list counts %d events over the nodes, fewer than the %d listed", counted, len(listed))
	}
	t.Logf("the webhook list through %s counts %d events over the nodes (%d distinct listed)", survivors[1].name, counted, len(listed))

	// A redelivery asked of any node is made by the node that holds the
	// event: 202, and the target gets the event once more.
	var picked []int
	load.acked.Range(func(k, _ any) bool {
		picked = append(picked, k.(int))
		return len(picked) < 12
	})
	before := map[int]int{}
	for _, seq := range picked {
		before[seq] = target.count(seq)
	}
	for _, seq := range picked {
		id, _ := load.acked.Load(seq)
		u := fmt.Sprintf("%s/webhooker/webhooks/%s/events/%s/redeliver", survivors[0].g.admin,
			storage.DeclaredWebhookID(fmt.Sprintf("w%d", seq%clusterWebhooks)), id)
		resp, err := http.Post(u, "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("redeliver %s through %s: %d %s", id, survivors[0].name, resp.StatusCode, body)
		}
	}
	waitUntil(t, time.Minute, func() bool {
		for _, seq := range picked {
			if target.count(seq) <= before[seq] {
				return false
			}
		}
		return true
	}, func() string { return "a redelivery asked of another node was not made" })
	t.Logf("%d redeliveries asked of %s were made by the nodes holding the events", len(picked), survivors[0].name)
}

// listEventsThrough pages through a webhook's events on n's admin API.
func listEventsThrough(t *testing.T, n *clusterNode, webhookID string, limit int) []string {
	t.Helper()
	var ids []string
	before := ""
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatalf("webhook %s: still paging after 1000 pages", webhookID)
		}
		u := fmt.Sprintf("%s/webhooker/webhooks/%s/events?limit=%d", n.g.admin, webhookID, limit)
		if before != "" {
			u += "&before=" + before
		}
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Events []struct {
				ID string `json:"id"`
			} `json:"events"`
			NextBefore string `json:"next_before"`
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &page) != nil {
			t.Fatalf("GET %s: %d %s", u, resp.StatusCode, body)
		}
		for _, e := range page.Events {
			ids = append(ids, e.ID)
		}
		if page.NextBefore == "" {
			return ids
		}
		before = page.NextBefore
	}
}

// TestClusterAllNodesKilledLoseNothing kills every node at once with
// SIGKILL while the target is down, so that every acknowledged event is
// still owed, then restarts them: the stream, on every node's disk, hands
// out again what was not finished (the consumers' state, kept in memory,
// is gone), and every acknowledged event is delivered.
func TestClusterAllNodesKilledLoseNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three caddy processes")
	}
	bin := buildCaddy(t)
	target := newSeqTarget(t, 0)
	target.refuse.Store(true)
	// Retries far apart: no delivery gives up while the target is down.
	nodes := startClusterNodes(t, bin, target.url, "max_retries 100\n\t\t\t\tbackoff 1s 2s")
	var (
		acked sync.Map
		wg    sync.WaitGroup
	)
	client := &http.Client{Timeout: 10 * time.Second}
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := g; seq < 600; seq += 6 {
				n := nodes[seq%3]
				resp, err := client.Post(n.g.hooks+fmt.Sprintf("key-%d", seq%clusterWebhooks), "application/json",
					strings.NewReader(fmt.Sprintf(`{"n":%d}`, seq)))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					acked.Store(seq, n.name)
				}
			}
		}()
	}
	wg.Wait()
	var nAcked int
	acked.Range(func(_, _ any) bool { nAcked++; return true })
	if nAcked < 500 {
		t.Fatalf("only %d of 600 acknowledged before the kill", nAcked)
	}
	for _, n := range nodes {
		if err := n.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		_ = n.cmd.Wait()
	}
	if got := target.distinct(); got != 0 {
		t.Fatalf("the target, down, counted %d events", got)
	}
	for _, n := range nodes {
		n.start(t)
	}
	for _, n := range nodes {
		n.waitReady(t)
	}
	target.refuse.Store(false)
	waitUntil(t, 3*time.Minute, func() bool { return len(target.missing(&acked)) == 0 }, func() string {
		m := target.missing(&acked)
		return fmt.Sprintf("%d of %d acknowledged events never delivered after every node was killed (first: %v)", len(m), nAcked, m[:min(10, len(m))])
	})
	duplicates := 0
	acked.Range(func(k, _ any) bool {
		duplicates += target.count(k.(int)) - 1
		return true
	})
	// Every message handed out again was finished: none waits on a node,
	// none was handed back as unappliable (an event stored before the
	// kill is found by its id, not inserted twice).
	waitUntil(t, time.Minute, func() bool {
		for _, n := range nodes {
			if n.metric(t, "caddy_webhooker_cluster_held_messages") != 0 {
				return false
			}
		}
		return true
	}, func() string { return "messages still held after every event was delivered" })
	var retried, repeated float64
	for _, n := range nodes {
		retried += n.metric(t, `caddy_webhooker_cluster_messages_total{kind="retried",node="`+n.name+`"}`)
		repeated += n.metric(t, `caddy_webhooker_cluster_messages_total{kind="repeated",node="`+n.name+`"}`) +
			n.metric(t, `caddy_webhooker_cluster_messages_total{kind="applied",node="`+n.name+`"}`)
	}
	if retried != 0 {
		t.Errorf("%.0f messages handed back to try later after the restart", retried)
	}
	t.Logf("every node killed with %d acknowledged events owed: all delivered after the restart, %d duplicate deliveries; %.0f messages applied or found applied since, %.0f retried",
		nAcked, duplicates, repeated, retried)
}
