package caddymodule

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

// DefaultMaxIngestMemory bounds the body bytes held by ingests in flight
// unless max_ingest_memory says otherwise: 256 MiB, or max_body_size when
// that is larger, so that one body of the largest size always fits.
const DefaultMaxIngestMemory = 256 << 20

// minIntakeMemory is the least intake_memory accepted.
const minIntakeMemory = 1 << 20

// checkIntakeMemory refuses an intake_memory under 1 MiB (0 is the
// default, set by Provision).
func checkIntakeMemory(n int64) error {
	if n != 0 && n < minIntakeMemory {
		return fmt.Errorf("intake_memory (%d bytes) must be at least 1MiB", n)
	}
	return nil
}

// DefaultBodyTimeout is how long a client may take to send a body unless
// body_timeout says otherwise.
const DefaultBodyTimeout = 30 * time.Second

// bodyChunk is the first size of a body's buffer, and so the least memory
// a body in flight reserves: the buffer then doubles as bytes arrive.
const bodyChunk = 32 << 10

// budgetRetryAfter is the Retry-After of a 503 for lack of ingest memory.
// The bodies holding it finish or time out within body_timeout; most
// finish far sooner, so a provider is asked to come back soon.
const budgetRetryAfter = 5 * time.Second

// ingestMemory counts the body bytes reserved by ingests in flight in this
// process. It is one counter for every config: across a reload the old
// config's requests still hold memory, and the new config's limit must see
// it. Each request checks it against the limit of the config serving it.
var ingestMemory ingestBudget

// ingestBudget counts reserved bytes against a limit given at each
// reservation.
type ingestBudget struct{ inUse atomic.Int64 }

// reserve adds n bytes unless that would take the total over limit.
func (b *ingestBudget) reserve(n, limit int64) bool {
	for {
		cur := b.inUse.Load()
		if cur+n > limit {
			return false
		}
		if b.inUse.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

func (b *ingestBudget) release(n int64) { b.inUse.Add(-n) }

// heldBody is the memory one ingest has reserved for its body.
type heldBody struct {
	budget *ingestBudget
	limit  int64
	held   int64
}

// grow reserves n more bytes; false when the budget cannot give them.
func (h *heldBody) grow(n int64) bool {
	if !h.budget.reserve(n, h.limit) {
		return false
	}
	h.held += n
	return true
}

// release gives back everything reserved. It may be called more than once.
func (h *heldBody) release() {
	h.budget.release(h.held)
	h.held = 0
}

// bodyLimits are the app's bounds on reading one body.
type bodyLimits struct {
	maxBody   int64         // max_body_size
	maxMemory int64         // max_ingest_memory
	timeout   time.Duration // body_timeout
}

// readBody reads the whole body into a buffer that grows as bytes arrive,
// never from Content-Length alone: a client that declares 10 MiB and sends
// one byte holds one chunk. The buffer is reserved in ingestMemory; the
// caller must release the returned heldBody, also on error.
//
// Answers (as caddyhttp errors): 413 over max_body_size (by Content-Length
// before reading, or while reading); 503 with Retry-After when the memory
// budget is spent; 408 when the body is not in within body_timeout; 400 when
// it cannot be read. The last three close the connection, whose unread body
// is not worth reading.
func readBody(w http.ResponseWriter, r *http.Request, lim bodyLimits) ([]byte, *heldBody, error) {
	held := &heldBody{budget: &ingestMemory, limit: lim.maxMemory}
	tooLarge := func() error {
		return caddyhttp.Error(http.StatusRequestEntityTooLarge,
			fmt.Errorf("request body is over max_body_size (%d bytes)", lim.maxBody))
	}
	if r.ContentLength > lim.maxBody {
		return nil, held, tooLarge()
	}
	// The buffer never grows past what the body can be: its declared length
	// (Go's server reads no further), or one byte over the limit, the byte
	// that tells a chunked body is too large.
	ceiling := lim.maxBody + 1
	if r.ContentLength >= 0 {
		ceiling = r.ContentLength
	}

	clearDeadline := setBodyDeadline(w, r, lim.timeout)
	defer clearDeadline()

	src := http.MaxBytesReader(w, r.Body, lim.maxBody)
	var buf []byte
	for int64(len(buf)) < ceiling {
		if len(buf) == cap(buf) {
			next := min(max(2*int64(cap(buf)), bodyChunk), ceiling)
			if !held.grow(next - int64(cap(buf))) {
				closeAfter(w, r)
				w.Header().Set("Retry-After", strconv.Itoa(int(budgetRetryAfter/time.Second)))
				return nil, held, caddyhttp.Error(http.StatusServiceUnavailable,
					fmt.Errorf("max_ingest_memory (%d bytes) is held by the bodies of requests in flight", lim.maxMemory))
			}
			grown := make([]byte, len(buf), next)
			copy(grown, buf)
			buf = grown
		}
		n, err := src.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == nil {
			continue
		}
		var maxErr *http.MaxBytesError
		switch {
		case errors.Is(err, io.EOF):
			return buf, held, nil
		case errors.As(err, &maxErr):
			return nil, held, tooLarge()
		case isTimeout(err):
			closeAfter(w, r)
			return nil, held, caddyhttp.Error(http.StatusRequestTimeout,
				fmt.Errorf("request body not received within body_timeout (%s): %d bytes in", lim.timeout, len(buf)))
		default:
			closeAfter(w, r)
			return nil, held, caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("reading request body: %w", err))
		}
	}
	return buf, held, nil
}

// setBodyDeadline gives the body until timeout from now, and returns the
// function that lifts the deadline once the body is in: a deadline left on
// the connection would end Go's background read of it, and with it the
// request's context, while the event is being stored.
//
// A server whose own read_timeout is shorter keeps it: body_timeout never
// loosens the operator's bound. A connection that cannot take a deadline
// (ErrNotSupported) still has the memory budget as its bound.
func setBodyDeadline(w http.ResponseWriter, r *http.Request, timeout time.Duration) func() {
	if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok &&
		srv.ReadTimeout > 0 && time.Duration(srv.ReadTimeout) <= timeout {
		return func() {}
	}
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return func() {}
	}
	return func() { _ = rc.SetReadDeadline(time.Time{}) }
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// closeAfter asks the server to close the connection after this answer,
// rather than read the rest of a body it has refused. HTTP/1 closes it; Go's
// HTTP/2 server takes the header as a request to end the connection and
// drops it from the answer. HTTP/3 forbids the header, and quic-go would
// send it: there, the refused stream alone is ended.
func closeAfter(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor < 3 {
		w.Header().Set("Connection", "close")
	}
}

// sizeArg reads the option's one argument as a size such as 10MiB.
func sizeArg(d *caddyfile.Dispenser) (int64, error) {
	name := d.Val()
	var size string
	if !d.AllArgs(&size) {
		return 0, d.ArgErr()
	}
	n, err := humanize.ParseBytes(size)
	if err != nil || n == 0 || n > 1<<62 {
		return 0, d.Errf("%s %q: want a size such as 10MB or 512KiB", name, size)
	}
	return int64(n), nil
}
