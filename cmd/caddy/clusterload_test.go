package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clusterLoad posts numbered events to the nodes of a cluster at a steady
// rate, sequence number seq to webhook w(seq mod clusterWebhooks), and
// records which were acknowledged (200 with an event id).
type clusterLoad struct {
	client           *http.Client
	acked            sync.Map // sequence number -> event id
	nAcked, nRefused atomic.Int64
	refusedBy        [3]atomic.Int64 // each node's answers other than 200, and its errors (timeouts)
	unavailableBy    [3]atomic.Int64 // each node's 503s
	next             atomic.Int64
	// ackedSinceMark counts the acknowledgements after mark (a kill, a cut).
	marked         atomic.Bool
	ackedSinceMark atomic.Int64
	// skip is 1 + the index of a node not sent to (it answers nothing), 0
	// for none.
	skip atomic.Int64
	// sealedAt[i] is when node i was cut off (unix ns; 0 for not):
	// ackedWhileSealed[i] counts its 200s to requests sent after that.
	sealedAt         [3]atomic.Int64
	ackedWhileSealed [3]atomic.Int64
	stop             chan struct{}
	wg               sync.WaitGroup
}

// startClusterLoad starts perNode senders per node, each posting every
// 10 ms at most (about 100 events/s a sender).
func startClusterLoad(t *testing.T, nodes []*clusterNode, perNode int) *clusterLoad {
	t.Helper()
	l := &clusterLoad{client: &http.Client{Timeout: 10 * time.Second}, stop: make(chan struct{})}
	for i, n := range nodes {
		for range perNode {
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				tick := time.NewTicker(10 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-l.stop:
						return
					case <-tick.C:
					}
					if l.skip.Load() == int64(i+1) {
						continue
					}
					l.send(t, i, n)
				}
			}()
		}
	}
	return l
}

func (l *clusterLoad) send(t *testing.T, i int, n *clusterNode) {
	seq := int(l.next.Add(1))
	sent := time.Now().UnixNano()
	resp, err := l.client.Post(n.g.hooks+fmt.Sprintf("key-%d", seq%clusterWebhooks), "application/json",
		strings.NewReader(fmt.Sprintf(`{"n":%d}`, seq)))
	if err != nil {
		l.nRefused.Add(1)
		l.refusedBy[i].Add(1)
		return // the node is gone (or timed out): not acknowledged
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		l.nRefused.Add(1)
		l.refusedBy[i].Add(1)
		if resp.StatusCode == http.StatusServiceUnavailable {
			l.unavailableBy[i].Add(1)
		}
		return
	}
	var ack struct {
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal(body, &ack); err != nil || ack.EventID == "" {
		t.Errorf("200 without an event id from %s: %q", n.name, body)
		return
	}
	l.acked.Store(seq, ack.EventID)
	l.nAcked.Add(1)
	if at := l.sealedAt[i].Load(); at != 0 && sent > at {
		l.ackedWhileSealed[i].Add(1)
	}
	if l.marked.Load() {
		l.ackedSinceMark.Add(1)
	}
}

// mark starts counting ackedSinceMark.
func (l *clusterLoad) mark() { l.marked.Store(true) }

// halt stops the senders and waits for them.
func (l *clusterLoad) halt() {
	close(l.stop)
	l.wg.Wait()
}

// busiest is the index of the node that applied the most messages (it owns
// partitions: what is sent to their webhooks after it is lost is delivered
// only if the others take them over), and how many it applied.
func busiest(t *testing.T, nodes []*clusterNode) (int, float64) {
	t.Helper()
	at, most := 0, -1.0
	for i, n := range nodes {
		if a := n.metric(t, `caddy_webhooker_cluster_messages_total{kind="applied",node="`+n.name+`"}`); a > most {
			at, most = i, a
		}
	}
	return at, most
}
