package admin

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// Live updates for the UI: the data directory publishes the id of a
// webhook whenever something of it changes (an event stored, a delivery
// attempted, a target paused), and GET /webhooker/stream tells each
// connected page, as server-sent events, so that it refetches what it
// shows instead of polling.

const (
	// coalesceWindow: a listener hears at most one change per webhook in
	// this time; a burst of ingests is one refetch, not hundreds.
	coalesceWindow = 500 * time.Millisecond
	// pingInterval keeps an idle stream from being cut by proxies that end
	// silent connections.
	pingInterval = 25 * time.Second
)

// Changes is a broker of webhook changes to the stream route's
// connections. Publish never blocks and costs a lock and nothing more
// when nobody listens: there is no goroutine of its own.
type Changes struct {
	// count is len(listeners), read without the lock: Publish runs on
	// every ingest and every attempt, and mostly nobody listens.
	count     atomic.Int32
	mu        sync.Mutex
	listeners map[*changeListener]struct{}
	// forward, when set, is told every id Publish is (cluster mode: the
	// other nodes' pages hear of it too).
	forward atomic.Pointer[func(webhookID string)]
}

// changeListener is one stream connection: the ids published since it
// last took them (a set: repeats coalesce) and a wake-up with room for one.
type changeListener struct {
	pending map[string]struct{} // guarded by Changes.mu
	wake    chan struct{}
}

// NewChanges makes a broker with no listener.
func NewChanges() *Changes {
	return &Changes{listeners: make(map[*changeListener]struct{})}
}

// Publish tells every listener that webhook webhookID changed, and the
// forward function, if any.
func (c *Changes) Publish(webhookID string) {
	if f := c.forward.Load(); f != nil {
		(*f)(webhookID)
	}
	c.PublishHere(webhookID)
}

// Forward makes Publish tell f of every change too. f must not block.
func (c *Changes) Forward(f func(webhookID string)) { c.forward.Store(&f) }

// PublishHere tells this broker's listeners only: for a change heard from
// another node, which told its own.
func (c *Changes) PublishHere(webhookID string) {
	if c.count.Load() == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for l := range c.listeners {
		l.pending[webhookID] = struct{}{}
		select {
		case l.wake <- struct{}{}:
		default: // already woken: it will take this id with the others
		}
	}
}

// Listeners is the number of stream connections listening now.
func (c *Changes) Listeners() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.listeners)
}

func (c *Changes) listen() *changeListener {
	l := &changeListener{pending: make(map[string]struct{}), wake: make(chan struct{}, 1)}
	c.mu.Lock()
	c.listeners[l] = struct{}{}
	c.count.Store(int32(len(c.listeners)))
	c.mu.Unlock()
	return l
}

func (c *Changes) leave(l *changeListener) {
	c.mu.Lock()
	delete(c.listeners, l)
	c.count.Store(int32(len(c.listeners)))
	c.mu.Unlock()
}

// take empties l's pending set into held.
func (c *Changes) take(l *changeListener, held map[string]struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range l.pending {
		held[id] = struct{}{}
	}
	clear(l.pending)
}

// stream serves GET /webhooker/stream: `event: change` with
// `data: {"webhook_id":"…"}` per changed webhook the caller may see, a
// `: ping` comment every 25 s, until the client goes or the Backend's
// lifetime ends.
func (h *Handler) stream(w http.ResponseWriter, r *http.Request) error {
	c := h.b.Changes
	if c == nil {
		return errorf(http.StatusNotFound, "live updates are not available on this server")
	}
	visible := h.visibleTo(r)
	l := c.listen()
	defer c.leave(l)

	rc := http.NewResponseController(w)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no") // nginx and the like: do not hold events back
	w.WriteHeader(http.StatusOK)
	// Once the client has the headers, it is listening: nothing published
	// after that is lost.
	if _, err := fmt.Fprint(w, ": listening\n\n"); err != nil {
		return nil
	}
	if err := rc.Flush(); err != nil {
		return nil // the answer has begun: nothing more to say
	}

	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	resend := time.NewTimer(time.Hour)
	resend.Stop()
	defer resend.Stop()
	held := make(map[string]struct{}) // changed, not yet told
	told := make(map[string]time.Time)
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-h.b.background().Done(): // the data directory closes
			return nil
		case <-ping.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return nil
			}
			if rc.Flush() != nil {
				return nil
			}
			continue
		case <-l.wake:
			c.take(l, held)
		case <-resend.C:
		}
		now := time.Now()
		for id, at := range told {
			if now.Sub(at) >= coalesceWindow {
				delete(told, id)
			}
		}
		var next time.Duration
		wrote := false
		for id := range held {
			if at, ok := told[id]; ok {
				if wait := coalesceWindow - now.Sub(at); next == 0 || wait < next {
					next = wait
				}
				continue
			}
			delete(held, id)
			if !visible(id) {
				continue
			}
			// Webhook ids are UUIDs: nothing to escape in the JSON.
			if _, err := fmt.Fprintf(w, "event: change\ndata: {\"webhook_id\":%q}\n\n", id); err != nil {
				return nil
			}
			told[id] = now
			wrote = true
		}
		if wrote && rc.Flush() != nil {
			return nil
		}
		if next > 0 {
			resend.Reset(next)
		}
	}
}

// visibleTo tells which webhooks the caller of r may hear of: all on the
// admin API, a tenant's own on the tenant API (remembered per connection:
// a webhook does not change owner).
func (h *Handler) visibleTo(r *http.Request) func(webhookID string) bool {
	u, ok := tenantOf(r)
	if !ok {
		return func(string) bool { return true }
	}
	known := make(map[string]bool)
	return func(id string) bool {
		if own, ok := known[id]; ok {
			return own
		}
		wh, err := h.b.Main.Webhook(r.Context(), id)
		own := err == nil && wh.UserID == u.ID
		// A failed read is not remembered: the next change asks again.
		if err == nil || errors.Is(err, storage.ErrNotFound) {
			known[id] = own
		}
		return own
	}
}
