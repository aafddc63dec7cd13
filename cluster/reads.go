package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
)

// readSubject is where every node answers reads of its own files: a read
// published there is answered by each node up (no queue group), the asking
// one included.
const readSubject = "webhooker.read"

// gatherWait bounds how long Gather waits for the nodes' answers; with the
// embedded server it returns as soon as every routed node has answered, so
// only a node lost and not yet unrouted costs it. It is long enough for an
// answer that writes (a redelivery) on a loaded node.
const gatherWait = 10 * time.Second

// readConcurrency bounds the reads a node answers at once.
const readConcurrency = 8

// MaxReadAnswer is the largest answer to a read that NATS carries here
// (its max_payload, less room for headers).
func (c *Cluster) MaxReadAnswer() int { return int(c.nc.MaxPayload()) - 4096 }

// Reply is one node's answer to a read.
type Reply struct {
	Node string
	Data []byte
}

// ServeReads answers the reads of every node with answer(request), up to
// readConcurrency at once (past it, NATS queues them). Call it once.
func (c *Cluster) ServeReads(answer func(request []byte) []byte) error {
	sem := make(chan struct{}, readConcurrency)
	sub, err := c.nc.Subscribe(readSubject, func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			out := answer(m.Data)
			reply := nats.NewMsg(m.Reply)
			reply.Header.Set(headerNode, c.opts.Node)
			reply.Data = out
			_ = m.RespondMsg(reply)
		}()
	})
	if err != nil {
		return err
	}
	c.readSub = sub
	return nil
}

// Gather asks every node up to answer request from its own files and
// returns their answers, this node's included. It waits for as many
// answers as the embedded server has nodes routed (plus itself), for one
// that enough (if set) says is enough, or until gatherWait, whichever
// comes first: a node lost meanwhile costs the wait, not the answer of the
// others.
func (c *Cluster) Gather(ctx context.Context, request []byte, enough func(Reply) bool) ([]Reply, error) {
	inbox := c.nc.NewRespInbox()
	ch := make(chan *nats.Msg, 16)
	sub, err := c.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := c.nc.PublishRequest(readSubject, inbox, request); err != nil {
		return nil, err
	}
	want := -1 // unknown with `nats <url>`: wait out gatherWait
	if c.srv != nil {
		want = c.routedNodes() + 1
	}
	timer := time.NewTimer(gatherWait)
	defer timer.Stop()
	var out []Reply
	for want < 0 || len(out) < want {
		select {
		case m := <-ch:
			r := Reply{Node: m.Header.Get(headerNode), Data: m.Data}
			out = append(out, r)
			if enough != nil && enough(r) {
				return out, nil
			}
		case <-timer.C:
			return out, nil
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no node answered")
	}
	return out, nil
}
