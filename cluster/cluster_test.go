package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/webhooker/caddy-webhooker/storage"
)

// fakeApplier stores messages in memory and lets the test say when a
// delivery is final.
type fakeApplier struct {
	mu      sync.Mutex
	stored  map[string]*Message // by event id
	applied chan *Message
	// finish, when set, makes every delivery final as soon as it starts.
	finish func(id string)
}

func newFakeApplier() *fakeApplier {
	return &fakeApplier{stored: map[string]*Message{}, applied: make(chan *Message, 1000)}
}

func (f *fakeApplier) Apply(_ context.Context, m *Message) ([]string, func(), error) {
	if m.WebhookID == "unknown" {
		return nil, nil, ErrNotHere
	}
	f.mu.Lock()
	_, seen := f.stored[m.Event.ID]
	f.stored[m.Event.ID] = m
	f.mu.Unlock()
	open := []string{"d-" + m.Event.ID}
	if seen {
		return open, nil, nil
	}
	return open, func() {
		select {
		case f.applied <- m:
		default: // a test that does not read them counts stored
		}
		if f.finish != nil {
			f.finish(open[0])
		}
	}, nil
}

func (f *fakeApplier) Final(context.Context, string, []string) ([]string, error) { return nil, nil }
func (f *fakeApplier) Serial(*Message) bool                                      { return false }

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type testNode struct {
	c     *Cluster
	apply *fakeApplier
}

// startThree starts three nodes routed to each other, each with its own
// store dir, and waits until the intake stream is set up.
func startThree(t *testing.T) []*testNode { return startThreeConsuming(t, 3) }

// startThreeConsuming is startThree with only the first consuming nodes
// taking partitions.
func startThreeConsuming(t *testing.T, consuming int) []*testNode {
	t.Helper()
	routes := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	nodes := make([]*testNode, 3)
	var wg sync.WaitGroup
	for i := range nodes {
		others := []string{}
		for j, r := range routes {
			if j != i {
				others = append(others, r)
			}
		}
		a := newFakeApplier()
		c, err := Start(Options{
			Node: fmt.Sprintf("n%d", i), Listen: freeAddr(t), ClusterListen: routes[i], Routes: others,
		}, Settings{StoreDir: t.TempDir(), MaxMessage: 1 << 20, MaxBytes: 64 << 20}, a)
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = &testNode{c: c, apply: a}
		a.finish = c.Done
		t.Cleanup(func() { c.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-c.Ready():
			case <-time.After(60 * time.Second):
				t.Errorf("node %d: stream not ready in 60s", i)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, n := range nodes[:consuming] {
		n.c.Consume()
	}
	return nodes
}

func event(t testing.TB, body string) *storage.Event {
	t.Helper()
	return &storage.Event{
		ID: uuid.Must(uuid.NewV7()).String(), EntrypointKey: "k", Method: "POST", Path: "/hooks/k",
		Body: []byte(body), ReceivedAt: time.Now().UTC().Truncate(time.Microsecond),
		Headers: map[string][]string{"X-Test": {"1"}},
	}
}

// TestThreeNodesApplyEachEventOnce: events published on every node are
// applied once each, by some node, and acknowledged (the work-queue stream
// is empty after).
func TestThreeNodesApplyEachEventOnce(t *testing.T) {
	nodes := startThree(t)
	ctx := context.Background()
	for _, nd := range nodes {
		if f := nd.c.Figures(); f.Routes != 2 || !f.Ready || !f.Connected {
			t.Fatalf("%s: %+v, want routed to 2 others, ready and connected", nd.c.Node(), f)
		}
	}
	const n = 300
	want := map[string]bool{}
	for i := range n {
		ev := event(t, fmt.Sprintf(`{"i":%d}`, i))
		wh := fmt.Sprintf("wh-%d", i%37)
		if err := nodes[i%3].c.Publish(ctx, wh, ev, []string{"t1"}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		want[ev.ID] = true
	}
	got := map[string]int{}
	deadline := time.After(60 * time.Second)
	for len(got) < n {
		select {
		case m := <-nodes[0].apply.applied:
			got[m.Event.ID]++
		case m := <-nodes[1].apply.applied:
			got[m.Event.ID]++
		case m := <-nodes[2].apply.applied:
			got[m.Event.ID]++
		case <-deadline:
			t.Fatalf("applied %d of %d in 60s", len(got), n)
		}
	}
	for id, k := range got {
		if !want[id] || k != 1 {
			t.Fatalf("event %s applied %d times (published: %v)", id, k, want[id])
		}
	}
	// Every message acknowledged: the work queue empties.
	st := nodes[0].c.stream.Load()
	for {
		info, err := (*st).Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("%d messages left in the stream", info.State.Msgs)
		case <-time.After(50 * time.Millisecond):
		}
	}
	var acked uint64
	for _, nd := range nodes {
		acked += nd.c.Figures().Acked
	}
	if acked != n {
		t.Fatalf("acked %d, want %d", acked, n)
	}

	// A dedup id seen within the window, on any node, is a repeat: not
	// stored again, answered with the first event's id.
	first := event(t, `{"dedup":1}`)
	first.Dedup = storage.NewDedupKey("delivery-42", time.Hour)
	if err := nodes[0].c.Publish(ctx, "wh-dedup", first, []string{"t1"}); err != nil || first.Dedup.Repeat {
		t.Fatalf("first publish: %v (repeat %v)", err, first.Dedup.Repeat)
	}
	// The first is applied and finished, so the work-queue stream no
	// longer holds it: its id must come from elsewhere.
	for {
		info, err := (*st).Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 && info.State.LastSeq > uint64(n) {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("the first dedup event not finished: %d messages left", info.State.Msgs)
		case <-time.After(20 * time.Millisecond):
		}
	}
	again := event(t, `{"dedup":2}`)
	again.Dedup = storage.NewDedupKey("delivery-42", time.Hour)
	if err := nodes[2].c.Publish(ctx, "wh-dedup", again, []string{"t1"}); err != nil {
		t.Fatal(err)
	}
	if !again.Dedup.Repeat || again.ID != first.ID {
		t.Fatalf("repeat on another node: repeat %v, id %s, want the first's %s", again.Dedup.Repeat, again.ID, first.ID)
	}
	other := event(t, `{"dedup":3}`)
	other.Dedup = storage.NewDedupKey("delivery-42", time.Hour)
	if err := nodes[1].c.Publish(ctx, "wh-other", other, []string{"t1"}); err != nil || other.Dedup.Repeat {
		t.Fatalf("the same dedup id on another webhook is its own: %v (repeat %v)", err, other.Dedup.Repeat)
	}
}

// TestMessageRoundTrip: what encode writes, decode reads back, and a
// truncated or foreign message is refused.
func TestMessageRoundTrip(t *testing.T) {
	ev := event(t, "body \x00 bytes")
	data, err := encode(&Message{WebhookID: "w", Event: ev, TargetIDs: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if m.WebhookID != "w" || m.Event.ID != ev.ID || string(m.Event.Body) != string(ev.Body) ||
		len(m.TargetIDs) != 2 || m.Event.Headers.Get("X-Test") != "1" || !m.Event.ReceivedAt.Equal(ev.ReceivedAt) {
		t.Fatalf("round trip: %+v", m)
	}
	for _, bad := range [][]byte{nil, {0, 0}, {0, 0, 0, 99, '{'}, append([]byte{0, 0, 0, 2}, "{}"...), {0xff, 0xff, 0xff, 0xff}} {
		if _, err := decode(bad); !errors.Is(err, errMalformed) {
			t.Errorf("decode(%q) = %v, want errMalformed", bad, err)
		}
	}
}

// TestRouteWithoutTheSecretIsRefused: a server that reaches a node's route
// port without the cluster's secret is refused (the node logs why) and never
// counted as routed; one with it joins.
func TestRouteWithoutTheSecretIsRefused(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	aRoute, bRoute := freeAddr(t), freeAddr(t)
	secret := "0123456789abcdef-right"
	a, err := Start(Options{Node: "a", ClusterListen: aRoute, Routes: []string{bRoute}, Replicas: 1, Secret: secret},
		Settings{StoreDir: t.TempDir(), MaxMessage: 1 << 20, Logger: zap.New(core)}, newFakeApplier())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	intruder, err := Start(Options{Node: "x", ClusterListen: freeAddr(t), Routes: []string{aRoute}, Replicas: 1, Secret: "0123456789abcdef-wrong"},
		Settings{StoreDir: t.TempDir(), MaxMessage: 1 << 20}, newFakeApplier())
	if err != nil {
		t.Fatal(err)
	}
	defer intruder.Close()
	deadline := time.Now().Add(30 * time.Second)
	for logs.FilterMessageSnippet("Authorization Error").Len() == 0 && logs.FilterMessageSnippet("authentication").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the route without the secret was never refused; a's log:\n%v", logs.All())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := a.Figures().Routes; n != 0 {
		t.Fatalf("a is routed to %d servers after refusing the intruder", n)
	}
	friend, err := Start(Options{Node: "b", ClusterListen: bRoute, Routes: []string{aRoute}, Replicas: 1, Secret: secret},
		Settings{StoreDir: t.TempDir(), MaxMessage: 1 << 20}, newFakeApplier())
	if err != nil {
		t.Fatal(err)
	}
	defer friend.Close()
	for a.Figures().Routes != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the node with the secret did not join: a routed to %d", a.Figures().Routes)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNodeThatJoinsLateTakesItsShare: two nodes take every partition while
// the third does not consume; once it does, the others release what they
// hold over their share and it applies events, each event still applied
// once over the three.
func TestNodeThatJoinsLateTakesItsShare(t *testing.T) {
	nodes := startThreeConsuming(t, 2)
	ctx := context.Background()
	publish := func(from, n int) []string {
		var ids []string
		for i := range n {
			ev := event(t, fmt.Sprintf(`{"i":%d}`, from+i))
			if err := nodes[i%3].c.Publish(ctx, fmt.Sprintf("wh-%d", (from+i)%64), ev, []string{"t"}); err != nil {
				t.Fatalf("publish: %v", err)
			}
			ids = append(ids, ev.ID)
		}
		return ids
	}
	var all []string
	all = append(all, publish(0, 200)...)
	applied := func(i int) int {
		nodes[i].apply.mu.Lock()
		defer nodes[i].apply.mu.Unlock()
		return len(nodes[i].apply.stored)
	}
	deadline := time.Now().Add(60 * time.Second)
	for applied(0)+applied(1) < len(all) {
		if time.Now().After(deadline) {
			t.Fatalf("two nodes applied %d of %d", applied(0)+applied(1), len(all))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if applied(2) != 0 {
		t.Fatalf("the node not consuming applied %d", applied(2))
	}
	nodes[2].c.Consume()
	deadline = time.Now().Add(90 * time.Second)
	for round := 1; applied(2) == 0; round++ {
		if time.Now().After(deadline) {
			t.Fatalf("the late node took no partition in 90s: released %d and %d", nodes[0].c.Figures().Released, nodes[1].c.Figures().Released)
		}
		all = append(all, publish(round*1000, 64)...)
		time.Sleep(500 * time.Millisecond)
	}
	deadline = time.Now().Add(90 * time.Second)
	for applied(0)+applied(1)+applied(2) < len(all) {
		if time.Now().After(deadline) {
			t.Fatalf("applied %d of %d", applied(0)+applied(1)+applied(2), len(all))
		}
		time.Sleep(20 * time.Millisecond)
	}
	seen := map[string]int{}
	for _, n := range nodes {
		n.apply.mu.Lock()
		for id := range n.apply.stored {
			seen[id]++
		}
		n.apply.mu.Unlock()
	}
	for _, id := range all {
		if seen[id] != 1 {
			t.Errorf("event %s applied on %d nodes", id, seen[id])
		}
	}
	t.Logf("released by the first two: %d, %d; the late node applied %d", nodes[0].c.Figures().Released, nodes[1].c.Figures().Released, applied(2))
}

// TestFullIntakeRefusesWithErrIntakeFull: past the stream's MaxBytes an
// ingest is refused with ErrIntakeFull (503), nothing stored; what was
// acknowledged before stays.
func TestFullIntakeRefusesWithErrIntakeFull(t *testing.T) {
	a, _ := startTwo(t, 64<<10)
	// Nobody consumes: the stream only fills.
	ctx := context.Background()
	var acked int
	for i := range 200 {
		err := a.Publish(ctx, "wh", event(t, strings.Repeat("x", 1024)), []string{"t"})
		if errors.Is(err, ErrIntakeFull) {
			break
		}
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		acked++
	}
	if acked == 0 || acked >= 200 {
		t.Fatalf("%d of 200 1 KiB events acknowledged into a 64 KiB stream", acked)
	}
	st := a.stream.Load()
	info, err := (*st).Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if int(info.State.Msgs) != acked || info.State.Bytes > 64<<10 {
		t.Fatalf("stream holds %d messages, %d bytes; want the %d acknowledged, at most 64 KiB", info.State.Msgs, info.State.Bytes, acked)
	}
	t.Logf("%d events acknowledged, then ErrIntakeFull", acked)
}
