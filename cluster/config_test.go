package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// startTwo starts two nodes routed to each other (one replica: two nodes
// make a JetStream cluster), their intake holding at most maxBytes, and
// waits until their streams are set up.
func startTwo(t testing.TB, maxBytes int64) (a, b *Cluster) {
	t.Helper()
	aRoute, bRoute := freeAddr(t), freeAddr(t)
	set := func() Settings { return Settings{StoreDir: t.TempDir(), MaxMessage: 1 << 20, MaxBytes: maxBytes} }
	a, err := Start(Options{Node: "a", ClusterListen: aRoute, Routes: []string{bRoute}, Replicas: 1}, set(), newFakeApplier())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err = Start(Options{Node: "b", ClusterListen: bRoute, Routes: []string{aRoute}, Replicas: 1}, set(), newFakeApplier())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	waitReady(t, a, "a")
	waitReady(t, b, "b")
	return a, b
}

// waitReady waits until c's streams are set up, failing after 60 s.
func waitReady(t testing.TB, c *Cluster, what string) {
	t.Helper()
	select {
	case <-c.Ready():
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: streams not ready in 60s (routed to %d)", what, c.Figures().Routes)
	}
}

type applied struct {
	seq    uint64
	change string
}

// TestConfigLogAppendsOnConditionAndIsFollowedInOrder: an append names
// the last change its node applied, and is refused with
// storage.ErrConfigConflict when another came since; a follower gets every
// change once, in order, from where it says it is.
func TestConfigLogAppendsOnConditionAndIsFollowedInOrder(t *testing.T) {
	a, b := startTwo(t, 1<<20)
	ctx := context.Background()
	if head, err := a.Head(ctx); err != nil || head != 0 {
		t.Fatalf("head of an empty log: %d, %v", head, err)
	}
	if seq, err := a.Append(ctx, []byte("one"), 0); err != nil || seq != 1 {
		t.Fatalf("a appends after 0: %d, %v", seq, err)
	}
	if _, err := b.Append(ctx, []byte("stale"), 0); !errors.Is(err, storage.ErrConfigConflict) {
		t.Fatalf("b appends after 0 once the log is at 1: %v, want ErrConfigConflict", err)
	}
	if seq, err := b.Append(ctx, []byte("two"), 1); err != nil || seq != 2 {
		t.Fatalf("b appends after 1: %d, %v", seq, err)
	}
	if head, err := b.Head(ctx); err != nil || head != 2 {
		t.Fatalf("head: %d, %v", head, err)
	}

	// b follows from 1 (it holds change 1): it gets 2, then 3, once each;
	// a change it fails is tried again before the next.
	got := make(chan applied, 10)
	var at uint64 = 1
	failed := false
	b.FollowConfig(func() uint64 { return at }, func(_ context.Context, seq uint64, change []byte) error {
		if seq == 3 && !failed {
			failed = true
			return fmt.Errorf("refused once")
		}
		at = seq
		got <- applied{seq, string(change)}
		return nil
	})
	if _, err := a.Append(ctx, []byte("three"), 2); err != nil {
		t.Fatal(err)
	}
	var seen []applied
	for len(seen) < 2 {
		select {
		case x := <-got:
			seen = append(seen, x)
		case <-time.After(30 * time.Second):
			t.Fatalf("followed %v in 30s, want changes 2 and 3", seen)
		}
	}
	if !slices.Equal(seen, []applied{{2, "two"}, {3, "three"}}) || !failed {
		t.Fatalf("followed %v (failed once: %v), want 2 then 3", seen, failed)
	}
	if c := a.Figures().ConfigChanges + b.Figures().ConfigChanges; c != 3 {
		t.Fatalf("ConfigChanges: %d, want 3 appended", c)
	}
}

// TestChangesReachTheOtherNodesNotTheSender: a webhook changed on one node
// is heard by the others, not by itself.
func TestChangesReachTheOtherNodesNotTheSender(t *testing.T) {
	a, b := startTwo(t, 1<<20)
	heardA, heardB := make(chan []string, 10), make(chan []string, 10)
	if err := a.HearChanges(func(ids []string) { heardA <- ids }); err != nil {
		t.Fatal(err)
	}
	if err := b.HearChanges(func(ids []string) { heardB <- ids }); err != nil {
		t.Fatal(err)
	}
	// Subscriptions travel between the servers: a's first batch may go
	// before b's interest reached a's server, so a tells again until b hears.
	deadline := time.After(30 * time.Second)
	for got := false; !got; {
		a.Changed("wh-1")
		a.Changed("wh-1")
		select {
		case ids := <-heardB:
			if !slices.Equal(ids, []string{"wh-1"}) {
				t.Fatalf("b heard %v, want wh-1 once", ids)
			}
			got = true
		case <-time.After(time.Second):
		case <-deadline:
			t.Fatal("b never heard of a's change")
		}
	}
	// b tells of its own: a hears it, and had it heard its own wh-1, that
	// would have come first.
	b.Changed("wh-2")
	select {
	case ids := <-heardA:
		if !slices.Equal(ids, []string{"wh-2"}) {
			t.Fatalf("a heard %v first, want b's wh-2 (not its own wh-1)", ids)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a never heard of b's change")
	}
}

// TestSplitIDsDropsWhatIsNoID: a batch of changed ids from the network
// keeps lines of 1 to 64 bytes; empty lines and longer ones are dropped.
func TestSplitIDsDropsWhatIsNoID(t *testing.T) {
	long := string(make([]byte, 65))
	got := splitIDs([]byte("a\n\n" + long + "\nb\nc"))
	if !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("splitIDs: %q", got)
	}
	if got := splitIDs(nil); len(got) != 0 {
		t.Fatalf("splitIDs(nil): %q", got)
	}
}
