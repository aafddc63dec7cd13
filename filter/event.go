package filter

import (
	"context"
	"net/http"
	"net/url"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"
)

const (
	// MaxBodyBytes is the largest body parsed for filters: a larger one is
	// null to them. The entrypoint's max_body_size bounds what arrives
	// (10 MiB by default); parsed JSON takes several times its size in
	// memory, on the ingest path, so filters read no more than this.
	MaxBodyBytes = 1 << 20
	// MaxBodyDepth is the deepest nesting of objects and arrays parsed:
	// a deeper body is null to filters. Webhook payloads nest a handful of
	// levels; [[[[…]]]] would only cost recursion.
	MaxBodyDepth = 64
)

// Event is what filters see of one event. Build one per event, evaluate
// every target's filter against it, then Close it: each variable is
// computed the first time a filter reads it, once, so that the body is
// parsed at most once per event, and not at all when no filter reads it;
// the filters share its EventBudget. An Event is not safe for concurrent
// use.
type Event struct {
	method, path, rawQuery string
	header                 http.Header
	rawBody                []byte

	ctx    context.Context // EventBudget, from the first evaluation
	cancel context.CancelFunc

	query    map[string]string
	headers  map[string]string
	body     any
	resolved uint8 // bits: resolvedQuery, resolvedHeader, resolvedBody
}

const (
	resolvedQuery = 1 << iota
	resolvedHeader
	resolvedBody
)

// NewEvent describes a request to filters. It keeps header and body, which
// the caller must not change while the Event is in use.
func NewEvent(method, path, rawQuery string, header http.Header, body []byte) *Event {
	return &Event{method: method, path: path, rawQuery: rawQuery, header: header, rawBody: body}
}

// budget is the context of ev's evaluations: its deadline is EventBudget
// after the first.
func (ev *Event) budget() context.Context {
	if ev.ctx == nil {
		ev.ctx, ev.cancel = context.WithTimeout(context.Background(), EventBudget)
	}
	return ev.ctx
}

// Close releases the timer of ev's budget.
func (ev *Event) Close() {
	if ev.cancel != nil {
		ev.cancel()
	}
}

// BodyParsed reports whether a filter has read the body of ev, which was
// then parsed: for tests and benchmarks.
func (ev *Event) BodyParsed() bool { return ev.resolved&resolvedBody != 0 }

func (ev *Event) queryMap() map[string]string {
	if ev.resolved&resolvedQuery == 0 {
		ev.resolved |= resolvedQuery
		// A malformed pair is left out; the pairs around it are kept, as
		// the receiver of a delivery would read them.
		values, _ := url.ParseQuery(ev.rawQuery)
		ev.query = make(map[string]string, len(values))
		for k, v := range values {
			if len(v) > 0 {
				ev.query[k] = v[0]
			}
		}
	}
	return ev.query
}

func (ev *Event) headerMap() map[string]string {
	if ev.resolved&resolvedHeader == 0 {
		ev.resolved |= resolvedHeader
		ev.headers = make(map[string]string, len(ev.header))
		for k, v := range ev.header {
			if len(v) == 0 {
				continue
			}
			// Go's server canonicalizes the names it reads; a header built
			// otherwise (an HTTP/2 frame kept as sent, a test) is
			// canonicalized here, and the first of two spellings wins.
			k = http.CanonicalHeaderKey(k)
			if _, dup := ev.headers[k]; !dup {
				ev.headers[k] = v[0]
			}
		}
	}
	return ev.headers
}

func (ev *Event) bodyValue() any {
	if ev.resolved&resolvedBody == 0 {
		ev.resolved |= resolvedBody
		ev.body = parseBody(ev.rawBody)
	}
	return ev.body
}

// activation gives CEL the variables of an Event.
type activation struct{ ev *Event }

func (a activation) ResolveName(name string) (any, bool) {
	switch name {
	case "method":
		return a.ev.method, true
	case "path":
		return a.ev.path, true
	case "query":
		return a.ev.queryMap(), true
	case "header":
		return a.ev.headerMap(), true
	case "body":
		if v := a.ev.bodyValue(); v != nil {
			return v, true
		}
		return types.NullValue, true
	}
	return nil, false
}

func (activation) Parent() interpreter.Activation { return nil }
