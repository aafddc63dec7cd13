package cluster

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/storage"
)

// fakeMsg is a hand-out of a stream message that counts its acks; what
// else it is asked panics (the embedded nil interface).
type fakeMsg struct {
	jetstream.Msg
	acks int
}

func (m *fakeMsg) Ack() error { m.acks++; return nil }

// storedBefore is an Applier whose event is stored already, with its
// deliveries open.
type storedBefore struct{ open []string }

func (a storedBefore) Apply(context.Context, *Message) ([]string, func(), error) {
	return a.open, nil, nil
}
func (storedBefore) Final(context.Context, string, []string) ([]string, error) { return nil, nil }
func (storedBefore) Serial(*Message) bool                                      { return false }

// A message handed out again while held (its ack wait ran out while this
// node stood still) is held once: the newest hand-out is acknowledged when
// its deliveries are final, and nothing stays held.
func TestOwnerHoldsAMessageHandedOutTwiceOnce(t *testing.T) {
	c := &Cluster{ctx: context.Background(), log: zap.NewNop()}
	o := newOwner(c, storedBefore{open: []string{"d1", "d2"}})
	m := &Message{WebhookID: "w", Event: &storage.Event{ID: "e"}, Redelivered: true}
	first, again := &fakeMsg{}, &fakeMsg{}
	o.applyOne(first, m)
	o.applyOne(again, m)
	if n := len(o.held); n != 1 {
		t.Fatalf("%d messages held after one handed out twice, want 1", n)
	}
	o.Done("d1")
	o.Done("d2")
	if len(o.held) != 0 || len(o.byDelivery) != 0 {
		t.Errorf("still held after its deliveries were final: %d messages, %d deliveries", len(o.held), len(o.byDelivery))
	}
	if first.acks != 0 || again.acks != 1 {
		t.Errorf("acks: first hand-out %d, second %d; want 0 and 1", first.acks, again.acks)
	}
}
