package cluster

import (
	"context"
	"errors"
	"testing"
	"time"
)

// fakePins answers the guard's questions from a table, counting them.
type fakePins struct {
	pinned map[int]string
	err    error
	asked  int
}

func (f *fakePins) ask(_ context.Context, p int) (string, error) {
	f.asked++
	return f.pinned[p], f.err
}

func newFakeGuard() (*stallGuard, *fakePins, *time.Time) {
	now := time.Unix(1_700_000_000, 0)
	pins := &fakePins{pinned: map[int]string{}}
	g := newStallGuard(func() time.Time { return now }, pins.ask)
	return g, pins, &now
}

// Without a stall the guard asks nothing, however many messages come.
func TestStallGuardAsksNothingWhileTheProcessRuns(t *testing.T) {
	g, pins, now := newFakeGuard()
	ctx := context.Background()
	for range 100 {
		*now = now.Add(stallAfter / 2) // messages or beats this often: no stall
		if g.stale(ctx, 3, "pin-a") {
			t.Fatal("a message was left alone with no stall")
		}
	}
	if pins.asked != 0 || g.stalls != 0 {
		t.Errorf("asked the stream %d times, noticed %d stalls; want 0 and 0", pins.asked, g.stalls)
	}
}

// After a stall, the first message of a partition asks the stream once:
// a pin given to another node meanwhile leaves every message received
// under it alone, and takes the messages of a new pin; a pin still this
// node's takes them all. Noticed by the handler itself, before a beat.
func TestStallGuardLeavesAloneWhatALostPinBrought(t *testing.T) {
	g, pins, now := newFakeGuard()
	ctx := context.Background()
	pins.pinned[1] = "pin-of-another-node"
	pins.pinned[2] = "pin-b"
	*now = now.Add(20 * time.Second) // SIGSTOP, then SIGCONT: no beat yet

	for i := range 3 {
		if !g.stale(ctx, 1, "pin-a") {
			t.Fatalf("message %d received under a lost pin was applied", i+1)
		}
	}
	if g.stale(ctx, 1, "pin-new") {
		t.Error("a message under a new pin was left alone")
	}
	for i := range 3 {
		if g.stale(ctx, 2, "pin-b") {
			t.Fatalf("message %d of a partition still pinned here was left alone", i+1)
		}
	}
	if pins.asked != 2 || g.stalls != 1 {
		t.Errorf("asked the stream %d times, noticed %d stalls; want 2 (once a partition) and 1", pins.asked, g.stalls)
	}

	// The next stall asks again, noticed by the beat this time.
	*now = now.Add(10 * time.Second)
	g.beat()
	pins.pinned[2] = "pin-of-another-node"
	if !g.stale(ctx, 2, "pin-b") {
		t.Error("after a second stall, a message under the pin lost in it was applied")
	}
	if pins.asked != 3 || g.stalls != 2 {
		t.Errorf("asked the stream %d times, noticed %d stalls; want 3 and 2", pins.asked, g.stalls)
	}
}

// While the stream cannot say, messages are left alone (they come again),
// and it is asked again at most every pinAskEvery.
func TestStallGuardLeavesAloneWhileTheStreamCannotSay(t *testing.T) {
	g, pins, now := newFakeGuard()
	ctx := context.Background()
	pins.pinned[0] = "pin-a"
	pins.err = errors.New("no quorum")
	*now = now.Add(time.Minute)
	for range 5 {
		if !g.stale(ctx, 0, "pin-a") {
			t.Fatal("a message was applied while the stream could not say whose its pin is")
		}
	}
	if pins.asked != 1 {
		t.Errorf("asked %d times within %s, want 1", pins.asked, pinAskEvery)
	}
	pins.err = nil
	*now = now.Add(pinAskEvery)
	if g.stale(ctx, 0, "pin-a") {
		t.Error("the stream said the pin is still this node's, and the message was left alone")
	}
	if pins.asked != 2 {
		t.Errorf("asked %d times, want 2", pins.asked)
	}
}

// A message without a pin (no priority group) is never left alone.
func TestStallGuardTakesMessagesWithoutAPin(t *testing.T) {
	g, pins, now := newFakeGuard()
	*now = now.Add(time.Minute)
	if g.stale(context.Background(), 0, "") || pins.asked != 0 {
		t.Errorf("a message without a pin: left alone or asked about (%d)", pins.asked)
	}
}
