package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// tenant calls n's tenant API (webhooker_api on its site) with an API key.
func (n *clusterNode) tenant(t *testing.T, key, method, path string, body, out any) int {
	t.Helper()
	return n.call(t, strings.TrimSuffix(n.g.hooks, "/hooks/"), "Bearer "+key, method, path, body, out)
}

// api calls n's admin API and decodes a JSON answer into out (when not
// nil), returning the status.
func (n *clusterNode) api(t *testing.T, method, path string, body, out any) int {
	t.Helper()
	return n.call(t, n.g.admin, "", method, path, body, out)
}

func (n *clusterNode) call(t *testing.T, base, auth, method, path string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+"/webhooker"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, n.name, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s on %s: %v: %s", method, path, n.name, err, data)
		}
	}
	if resp.StatusCode >= 500 {
		t.Logf("%s %s on %s: %d %s", method, path, n.name, resp.StatusCode, data)
	}
	return resp.StatusCode
}

// configApplied is the place in the configuration log n has applied.
func (n *clusterNode) configApplied(t *testing.T) uint64 {
	t.Helper()
	var s struct {
		Cluster struct {
			ConfigApplied uint64 `json:"config_applied"`
		} `json:"cluster"`
	}
	if n.api(t, "GET", "/settings", nil, &s) != http.StatusOK {
		t.Fatalf("settings of %s", n.name)
	}
	return s.Cluster.ConfigApplied
}

// converged waits until every node has applied the configuration log as
// far as the furthest.
func converged(t *testing.T, nodes []*clusterNode) uint64 {
	t.Helper()
	var want uint64
	for _, n := range nodes {
		want = max(want, n.configApplied(t))
	}
	for _, n := range nodes {
		waitUntil(t, 30*time.Second, func() bool { return n.configApplied(t) >= want },
			func() string {
				return fmt.Sprintf("%s did not apply the configuration log up to %d:\n%s", n.name, want, n.logs)
			})
	}
	return want
}

// TestClusterConfigMadeOnOneNodeReachesEvery runs three Caddy processes as
// a cluster and changes the configuration through the admin API of
// different nodes: a webhook made on one, its target added on another,
// takes events on all three and delivers them; three nodes adding a target
// of one name at once make one target, the others told 409; a node killed
// meanwhile catches up when it restarts; a webhook deleted on one node is
// gone from all.
func TestClusterConfigMadeOnOneNodeReachesEvery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three caddy processes")
	}
	bin := buildCaddy(t)
	target := newSeqTarget(t, 0)
	nodes := startClusterNodes(t, bin, target.url, "")

	type webhook struct {
		ID          string `json:"id"`
		Entrypoints []struct {
			Key string `json:"key"`
		} `json:"entrypoints"`
		Targets []struct {
			Name string `json:"name"`
			URL  string `json:"url"`
		} `json:"targets"`
	}
	var wh webhook
	if st := nodes[0].api(t, "POST", "/webhooks", map[string]any{"name": "made-on-n1"}, &wh); st != http.StatusCreated {
		t.Fatalf("create a webhook on n1: %d", st)
	}
	// n2 adds its target at once: its write waits until n2 has applied the
	// webhook's creation, so it is never told the webhook does not exist.
	if st := nodes[1].api(t, "POST", "/webhooks/"+wh.ID+"/targets",
		map[string]any{"name": "sink", "type": "http", "url": target.url}, nil); st != http.StatusCreated {
		t.Fatalf("add a target on n2 to the webhook made on n1: %d", st)
	}
	converged(t, nodes)

	// Every node takes events on the new entrypoint; they are delivered.
	key := wh.Entrypoints[0].Key
	for i, n := range nodes {
		for j := range 5 {
			seq := 1_000_000 + 10*i + j
			resp, err := http.Post(n.g.hooks+key, "application/json", strings.NewReader(fmt.Sprintf(`{"n":%d}`, seq)))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("POST to the API-made entrypoint on %s: %d", n.name, resp.StatusCode)
			}
		}
	}
	waitUntil(t, 60*time.Second, func() bool {
		for i := range nodes {
			for j := range 5 {
				if target.count(1_000_000+10*i+j) == 0 {
					return false
				}
			}
		}
		return true
	}, func() string {
		return "the events posted to an API-made entrypoint on every node were not all delivered"
	})

	// A page open on any node hears of an event applied on whichever node
	// owns the webhook's partition: one node applies it, all three hear.
	heard := make([]chan struct{}, len(nodes))
	for i, n := range nodes {
		heard[i] = n.hearChange(t, wh.ID)
	}
	resp, err := http.Post(nodes[0].g.hooks+key, "application/json", strings.NewReader(`{"n":2000000}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for i, h := range heard {
		select {
		case <-h:
		case <-time.After(30 * time.Second):
			t.Fatalf("the live updates of %s did not tell of the event applied on the webhook's owner", nodes[i].name)
		}
	}

	// Three nodes add a target named "dup" at the same moment: the log
	// orders them, one makes it, the others find the name taken.
	statuses := make([]int, len(nodes))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			statuses[i] = n.api(t, "POST", "/webhooks/"+wh.ID+"/targets",
				map[string]any{"name": "dup", "type": "log"}, nil)
		}()
	}
	close(start)
	wg.Wait()
	created, taken := 0, 0
	for _, st := range statuses {
		switch st {
		case http.StatusCreated:
			created++
		case http.StatusConflict:
			taken++
		}
	}
	if created != 1 || taken != 2 {
		t.Fatalf("three concurrent adds of one target name answered %v: want one 201 and two 409", statuses)
	}
	converged(t, nodes)
	for _, n := range nodes {
		var got webhook
		n.api(t, "GET", "/webhooks/"+wh.ID, nil, &got)
		if len(got.Targets) != 2 {
			t.Fatalf("%s has targets %+v: want sink and one dup", n.name, got.Targets)
		}
	}

	// n3 is killed; a change made meanwhile reaches it when it restarts.
	victim := nodes[2]
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = victim.cmd.Wait()
	// Until the stream has a new leader (if n3 led it), a change is
	// answered 503, as an ingest is: the client tries again.
	waitUntil(t, 60*time.Second, func() bool {
		return nodes[0].api(t, "PATCH", "/webhooks/"+wh.ID, map[string]any{"description": "changed while n3 was down"}, nil) == http.StatusOK
	}, func() string { return "n1 did not take a change with n3 down:\n" + nodes[0].logs.String() })
	victim.start(t)
	victim.waitReady(t)
	converged(t, nodes)
	var got struct {
		Description string `json:"description"`
	}
	victim.api(t, "GET", "/webhooks/"+wh.ID, nil, &got)
	if got.Description != "changed while n3 was down" {
		t.Fatalf("n3 after its restart: description %q", got.Description)
	}

	// A user made on n1, given an API key on n2, makes a webhook through
	// the tenant API of n3; events posted to it on every node are listed
	// whole by every node's tenant API; another user's key finds nothing.
	var alice, bob struct {
		ID string `json:"id"`
	}
	var aliceKey, bobKey struct {
		Key string `json:"key"`
	}
	if nodes[0].api(t, "POST", "/users", map[string]any{"name": "alice"}, &alice) != http.StatusCreated ||
		nodes[0].api(t, "POST", "/users", map[string]any{"name": "bob"}, &bob) != http.StatusCreated {
		t.Fatal("create the users on n1")
	}
	if nodes[1].api(t, "POST", "/users/"+alice.ID+"/api-keys", map[string]any{"name": "ci"}, &aliceKey) != http.StatusCreated ||
		nodes[1].api(t, "POST", "/users/"+bob.ID+"/api-keys", map[string]any{"name": "ci"}, &bobKey) != http.StatusCreated {
		t.Fatal("create the API keys on n2")
	}
	var tw webhook
	if st := nodes[2].tenant(t, aliceKey.Key, "POST", "/webhooks", map[string]any{"name": "alices"}, &tw); st != http.StatusCreated {
		t.Fatalf("alice makes a webhook on n3 with the key made on n2: %d", st)
	}
	if st := nodes[2].tenant(t, aliceKey.Key, "POST", "/webhooks/"+tw.ID+"/targets", map[string]any{"name": "keep", "type": "database"}, nil); st != http.StatusCreated {
		t.Fatalf("alice adds a target on n3: %d", st)
	}
	converged(t, nodes)
	for i, n := range nodes {
		resp, err := http.Post(n.g.hooks+tw.Entrypoints[0].Key, "application/json", strings.NewReader(fmt.Sprintf(`{"n":%d}`, 3_000_000+i)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST to alice's webhook on %s: %d", n.name, resp.StatusCode)
		}
	}
	// One node applies them (the partition's owner): each node's tenant
	// API lists them all.
	for _, n := range nodes {
		waitUntil(t, 60*time.Second, func() bool {
			var page struct {
				Events []struct {
					ID string `json:"id"`
				} `json:"events"`
			}
			return n.tenant(t, aliceKey.Key, "GET", "/webhooks/"+tw.ID+"/events", nil, &page) == http.StatusOK && len(page.Events) == len(nodes)
		}, func() string { return n.name + "'s tenant API did not list alice's events from every node" })
	}
	if st := nodes[0].tenant(t, bobKey.Key, "GET", "/webhooks/"+tw.ID+"/events", nil, nil); st != http.StatusNotFound {
		t.Fatalf("bob reads alice's events through n1: %d, want 404", st)
	}

	// A bulk redelivery asked of any node runs on every node, each on the
	// events it holds, under one id: its figures are the cluster's, read
	// and cancelled through any node.
	type job struct {
		ID          string `json:"id"`
		State       string `json:"state"`
		Matched     int    `json:"matched"`
		Redelivered int    `json:"redelivered"`
	}
	for i, n := range nodes {
		var dry struct {
			Matched int `json:"matched"`
		}
		if st := n.api(t, "POST", "/webhooks/"+tw.ID+"/redeliver", map[string]any{"status": "delivered", "dry_run": true}, &dry); st != http.StatusOK || dry.Matched != len(nodes) {
			t.Fatalf("dry run on %s: %d, matched %d, want %d", n.name, st, dry.Matched, len(nodes))
		}
		var started struct {
			Job job `json:"job"`
		}
		if st := n.api(t, "POST", "/webhooks/"+tw.ID+"/redeliver", map[string]any{"status": "delivered"}, &started); st != http.StatusAccepted || started.Job.Matched != len(nodes) {
			t.Fatalf("bulk redelivery on %s: %d %+v, want %d matched", n.name, st, started.Job, len(nodes))
		}
		other := nodes[(i+1)%len(nodes)]
		var got job
		waitUntil(t, 30*time.Second, func() bool {
			return other.api(t, "GET", "/webhooks/"+tw.ID+"/redeliver/"+started.Job.ID, nil, &got) == http.StatusOK && got.State != "running"
		}, func() string { return fmt.Sprintf("the job started on %s, read on %s: %+v", n.name, other.name, got) })
		if got.State != "done" || got.Redelivered != len(nodes) {
			t.Fatalf("the job started on %s, read on %s: %+v, want done with %d redelivered", n.name, other.name, got, len(nodes))
		}
	}

	// Deleted on n2: gone from every node's routes.
	if st := nodes[1].api(t, "DELETE", "/webhooks/"+wh.ID, nil, nil); st != http.StatusNoContent {
		t.Fatalf("delete on n2: %d", st)
	}
	// Eleven changes in the log, one per write that succeeded (a create,
	// two target adds, a patch; two users, two keys, alice's webhook and
	// target; a delete), applied by every node.
	if got := converged(t, nodes); got != 11 {
		for _, n := range nodes {
			for _, l := range strings.Split(n.logs.String(), "\n") {
				if strings.Contains(l, "configuration") {
					t.Log(n.name, l)
				}
			}
		}
		t.Fatalf("the configuration log's place: %d, want 11", got)
	}
	conflicts := 0.0
	for _, n := range nodes {
		if got := n.metric(t, "caddy_webhooker_cluster_config_applied"); got != 11 {
			t.Fatalf("%s's caddy_webhooker_cluster_config_applied: %v, want 11", n.name, got)
		}
		conflicts += n.metric(t, `caddy_webhooker_cluster_config_changes_total{kind="conflict",node="`+n.name+`"}`)
	}
	t.Logf("writes tried again after another node's change: %v", conflicts)
	for _, n := range nodes {
		resp, err := http.Post(n.g.hooks+key, "application/json", strings.NewReader(`{"n":-2}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("POST to the deleted webhook's entrypoint on %s: %d, want 404", n.name, resp.StatusCode)
		}
		if st := n.api(t, "GET", "/webhooks/"+wh.ID, nil, nil); st != http.StatusNotFound {
			t.Fatalf("GET the deleted webhook on %s: %d", n.name, st)
		}
	}
}

// hearChange opens n's live updates (GET /webhooker/stream) and returns a
// channel closed when they tell of webhookID.
func (n *clusterNode) hearChange(t *testing.T, webhookID string) chan struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", n.g.admin+"/webhooker/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("live updates of %s: %d", n.name, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	if !sc.Scan() { // ": listening": from now on nothing is missed
		t.Fatalf("live updates of %s: %v", n.name, sc.Err())
	}
	heard := make(chan struct{})
	go func() {
		defer resp.Body.Close()
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") && strings.Contains(sc.Text(), webhookID) {
				close(heard)
				return
			}
		}
	}()
	return heard
}
