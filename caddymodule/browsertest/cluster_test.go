package browsertest_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/cluster"
)

// idlePeer is a cluster node that never takes partitions: it only makes
// the quorum of the page's node (a node alone cannot start JetStream's
// cluster).
type idlePeer struct{}

func (idlePeer) Apply(context.Context, *cluster.Message) ([]string, func(), error) {
	return nil, nil, cluster.ErrNotHere
}
func (idlePeer) Final(context.Context, string, []string) ([]string, error) { return nil, nil }
func (idlePeer) Serial(*cluster.Message) bool                              { return false }

func freeLoopback(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestUIClusterNode: in cluster mode the webhook list says which node
// answers and how it stands, and New webhook makes a webhook through the
// cluster's configuration log. The page's node is routed to an idle peer,
// which makes the quorum and takes no partition.
func TestUIClusterNode(t *testing.T) {
	chromium := chromiumPath(t)
	here, there := freeLoopback(t), freeLoopback(t)
	peer, err := cluster.Start(cluster.Options{Node: "idle-peer", ClusterListen: there, Routes: []string{here}, Replicas: 1},
		cluster.Settings{StoreDir: t.TempDir(), MaxMessage: 1 << 20}, idlePeer{})
	if err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, fmt.Sprintf(`
		cluster {
			node ui-node
			cluster_listen %s
			routes %s
			replicas 1
		}
		webhook github {
			entrypoint github-in
		}`, here, there))
	t.Cleanup(func() { peer.Close() }) // before the gateway is unloaded: its node needs no quorum to stop
	// The stream is set up in the background: an ingest is acknowledged
	// once it is.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if status, _ := g.post("github-in", `{"x":1}`); status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the cluster node never acknowledged an event")
		}
		time.Sleep(100 * time.Millisecond)
	}
	b := newBrowser(t, chromium)
	b.openAdminUI()
	b.waitFor("the cluster line", `!document.querySelector('#cluster-node')?.hidden && document.querySelector('#cluster-node').textContent.includes('ui-node')`)
	txt := b.text("#cluster-node")
	for _, want := range []string{"Cluster node ui-node", "taking events", "routed to 1 other node", "of 16 partitions here", "Event lists read every node", "reaches every node", "change 0 applied here"} {
		if !strings.Contains(txt, want) {
			b.fail("cluster line %q does not say %q", txt, want)
		}
	}
	b.waitFor("the declared webhook in the list", `document.querySelector('#webhooks tr[data-webhook-id] .webhook-link')?.textContent === 'github'`)
	b.screenshot("cluster-node")

	b.click("New webhook", "#new-webhook")
	b.fill("#webhook-name", "made-in-cluster")
	b.click("Create webhook", "#create-webhook")
	b.waitFor("the new webhook's page", `location.hash.startsWith('#/webhooks/') && document.querySelector('h1')?.textContent.includes('made-in-cluster')`)
	b.openAdminUI()
	b.waitFor("the log's first change applied", `document.querySelector('#cluster-node')?.textContent.includes('change 1 applied here')`)
	b.checkNoProblems()
}
