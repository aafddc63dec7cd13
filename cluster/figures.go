package cluster

// Figures are a node's counts since it started, for metrics and the UI.
type Figures struct {
	Node string
	// Ready: the intake stream is set up and takes ingests.
	Ready bool
	// Connected: this node's connection to NATS is up.
	Connected bool
	// Routes is how many other nodes the embedded server is routed to
	// (-1 with `nats <url>`).
	Routes int
	// PartitionsOwned is how many partitions are pinned to this node.
	PartitionsOwned int
	// Published counts the events this node put in the stream; Repeats
	// those a dedup id turned away.
	Published, Repeats uint64
	// Applied counts the messages this node stored; TakenOver those of
	// them the stream had handed out before (to a node lost since), whose
	// deliveries may be made twice; Repeated the messages handed out again
	// whose event was stored here already.
	Applied, TakenOver, Repeated uint64
	// Acked counts the messages finished here; Retried those handed back
	// to try later; Malformed those dropped; Stale those received under a
	// pin lost while this node stood still, left to the partition's new
	// owner (stall.go).
	Acked, Retried, Malformed, Stale uint64
	// Stalls counts the times this node's process stood still past
	// stallAfter (5 s): its partitions' pins may have lapsed meanwhile.
	Stalls uint64
	// Held is how many messages this node awaits the deliveries of.
	Held int
	// Released counts the partitions this node let go to nodes with fewer
	// (balance.go).
	Released uint64
	// ConfigChanges counts the configuration changes this node appended
	// to the configuration log.
	ConfigChanges uint64
}

// Figures reports this node's state and counts.
func (c *Cluster) Figures() Figures {
	f := Figures{Node: c.opts.Node, Routes: -1}
	select {
	case <-c.ready:
		f.Ready = true
	default:
	}
	f.Connected = c.nc != nil && c.nc.IsConnected()
	if c.srv != nil {
		f.Routes = c.routedNodes()
	}
	f.Published, f.Repeats = c.published.Load(), c.duplicates.Load()
	f.ConfigChanges = c.configChanges.Load()
	if o := c.owner; o != nil {
		f.PartitionsOwned = int(o.owned.Load())
		f.Applied, f.TakenOver, f.Repeated = o.applied.Load(), o.takenOver.Load(), o.repeated.Load()
		f.Acked, f.Retried, f.Malformed = o.acked.Load(), o.retried.Load(), o.malformed.Load()
		f.Stale, f.Stalls = o.stale.Load(), o.guard.stallCount()
		f.Released = o.released.Load()
		o.mu.Lock()
		f.Held = len(o.held)
		o.mu.Unlock()
	}
	return f
}

// Done tells that delivery id is final: see owner.Done.
func (c *Cluster) Done(deliveryID string) {
	if c.owner != nil {
		c.owner.Done(deliveryID)
	}
}

// routedNodes counts the other servers the embedded one has routes to (a
// pool of connections each).
func (c *Cluster) routedNodes() int {
	rz, err := c.srv.Routez(nil)
	if err != nil {
		return 0
	}
	seen := map[string]bool{}
	for _, r := range rz.Routes {
		seen[r.RemoteID] = true
	}
	return len(seen)
}
