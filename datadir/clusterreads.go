package datadir

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/admin"
	"github.com/webhooker/caddy-webhooker/cluster"
)

// In cluster mode each node's event DBs hold the events it applied: those
// of the partitions it owns, and what it applied before a takeover. The
// event log's reads (a page of a webhook's events, one event) are asked
// of every node and merged, so that any node's API answers for every
// webhook.

// readRequest is an event-log read, or an operation on an event or a
// delivery, asked of every node.
type readRequest struct {
	Method string `json:"method,omitempty"` // "" is GET
	Path   string `json:"path"`
	Query  string `json:"query,omitempty"`
	Body   []byte `json:"body,omitempty"`
	// JobID is the id a bulk redelivery started by the request takes on
	// every node (clusterjobs.go).
	JobID string `json:"job_id,omitempty"`
}

// readAnswer is one node's answer: the status and body its own API gave.
type readAnswer struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
	Node   string          `json:"-"` // who answered (Gather's reply header)
}

// webhookList is the path of the webhook list, whose figures (?stats=true)
// add up every node's.
const webhookList = admin.Prefix + "/webhooks"

// eventLogRead says whether path is a read the nodes answer together: a
// webhook's events, or one event. The path was cleaned by the mux before.
func eventLogRead(path string) (list bool, ok bool) {
	parts, ok := webhookPath(path)
	switch {
	case ok && len(parts) == 2 && parts[1] == "events":
		return true, true
	case ok && len(parts) == 3 && parts[1] == "events":
		return false, true
	}
	return false, false
}

// webhookPath splits a path under the API's /webhooks/ into its segments;
// ok is false elsewhere, and for an empty, "." or ".." segment (the mux
// cleans or refuses those: such a path is served locally).
func webhookPath(path string) (parts []string, ok bool) {
	rest, found := strings.CutPrefix(path, admin.Prefix+"/webhooks/")
	if !found {
		return nil, false
	}
	parts = strings.Split(rest, "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return nil, false
		}
	}
	return parts, true
}

// eventOp says whether path is an operation on one event or delivery that
// the node holding it carries out: redeliver an event, retry or cancel a
// delivery. Every node is asked; those without it answer 404 and do
// nothing.
func eventOp(path string) bool {
	parts, ok := webhookPath(path)
	return ok && len(parts) == 4 && (parts[1] == "events" && parts[3] == "redeliver" ||
		parts[1] == "deliveries" && (parts[3] == "retry" || parts[3] == "cancel"))
}

// maxOpBody bounds an operation's body asked of the nodes (the API's own
// bound on a JSON body).
const maxOpBody = 1 << 20

// answerRead answers another node's read from this node's own files, or
// carries out an operation on what it holds, through the admin API as it
// would answer it locally.
func (d *Dir) answerRead(data []byte) []byte {
	var rq readRequest
	if err := json.Unmarshal(data, &rq); err != nil {
		return mustJSON(readAnswer{Status: http.StatusBadRequest, Body: errorBody("not a read request")})
	}
	var method string
	_, read := eventLogRead(rq.Path)
	switch {
	case rq.Method == "" && (read || rq.Path == webhookList):
		method = http.MethodGet
	case rq.Method == http.MethodPost && eventOp(rq.Path):
		method = http.MethodPost
	case bulkJobOp(rq.Method, rq.Path):
		method = rq.Method
	default:
		return mustJSON(readAnswer{Status: http.StatusBadRequest, Body: errorBody("not an event-log read or operation: " + rq.Method + " " + rq.Path)})
	}
	if rq.JobID != "" {
		// Only a bulk redelivery's start takes the id its job is to have.
		if start, _ := bulkJobPath(rq.Path); !start || method != http.MethodPost {
			return mustJSON(readAnswer{Status: http.StatusBadRequest, Body: errorBody("a job id goes with a bulk redelivery's start only")})
		}
		if err := uuid.Validate(rq.JobID); err != nil {
			return mustJSON(readAnswer{Status: http.StatusBadRequest, Body: errorBody("job id: " + err.Error())})
		}
	}
	h := d.api(func(a *apiHandlers) http.Handler { return a.admin })
	if h == nil {
		return mustJSON(readAnswer{Status: http.StatusServiceUnavailable, Body: errorBody("not started")})
	}
	ctx, cancel := context.WithTimeout(context.Background(), gatherTimeout)
	defer cancel()
	if rq.JobID != "" {
		ctx = admin.WithJobID(ctx, rq.JobID)
	}
	ctx = admin.ForPeer(ctx)
	r, err := http.NewRequestWithContext(ctx, method, rq.Path+"?"+rq.Query, bytes.NewReader(rq.Body))
	if err != nil {
		return mustJSON(readAnswer{Status: http.StatusBadRequest, Body: errorBody(err.Error())})
	}
	if len(rq.Body) > 0 {
		r.Header.Set("Content-Type", "application/json")
	}
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	h.ServeHTTP(rec, r)
	var body json.RawMessage
	if rec.body.Len() > 0 {
		body = rec.body.Bytes()
	}
	out := mustJSON(readAnswer{Status: rec.status, Body: body})
	if len(out) > d.cluster.MaxReadAnswer() {
		return mustJSON(readAnswer{Status: http.StatusBadGateway, Body: errorBody(fmt.Sprintf(
			"node %s holds it, but its answer of %d bytes is over what NATS carries: read it on that node's API", d.cluster.Node(), len(out)))})
	}
	return out
}

// opBody reads the JSON body of an operation to ask of every node, at
// most maxOpBody bytes. When it cannot, the answer is written (the API's
// own 415 for another type, 413) and ok is false.
func (c clusterReads) opBody(w http.ResponseWriter, r *http.Request) (body []byte, ok bool) {
	if ct := r.Header.Get("Content-Type"); r.ContentLength != 0 && ct != "" && !strings.HasPrefix(ct, "application/json") {
		c.local.ServeHTTP(w, r)
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxOpBody))
	if err != nil {
		writeRaw(w, http.StatusRequestEntityTooLarge, errorBody(fmt.Sprintf("body over %d bytes", maxOpBody)))
		return nil, false
	}
	return body, true
}

// gatherTimeout bounds one node's answer to a read (within the asking
// node's wait, cluster's gatherWait).
const gatherTimeout = 8 * time.Second

// clusterReads serves a face of the API in cluster mode: event-log reads
// are answered by every node together, the rest by this node. On the
// tenant face, this node first checks that the caller's key owns the
// webhook (the other nodes answer whatever this node asks).
type clusterReads struct {
	d      *Dir
	local  http.Handler
	tenant bool
}

func (c clusterReads) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if bulkJobOp(r.Method, r.URL.Path) {
		if c.tenantMay(w, r) {
			c.jobs(w, r)
		}
		return
	}
	if r.Method == http.MethodPost && eventOp(r.URL.Path) {
		if c.tenantMay(w, r) {
			c.op(w, r)
		}
		return
	}
	if r.Method == http.MethodGet && r.URL.Path == webhookList && r.URL.Query().Get("stats") == "true" {
		c.webhookFigures(w, r)
		return
	}
	list, ok := eventLogRead(r.URL.Path)
	if r.Method != http.MethodGet || !ok {
		c.local.ServeHTTP(w, r)
		return
	}
	if !c.tenantMay(w, r) {
		return
	}
	query := r.URL.Query()
	if list && query.Get("before") != "" && query.Get("before_at") == "" {
		// The cursor's event may be another node's: its time of receipt
		// lets every node page from it.
		at, status, body := c.receivedAt(r, query.Get("before"))
		if status != http.StatusOK {
			writeRaw(w, status, body)
			return
		}
		query.Set("before_at", at.Format(time.RFC3339Nano))
	}
	// One event: the first node that has it answers for it.
	var enough func(cluster.Reply) bool
	if !list {
		enough = succeeded
	}
	answers, err := c.gather(r.Context(), readRequest{Path: r.URL.Path, Query: query.Encode()}, enough)
	if err != nil {
		writeRaw(w, http.StatusServiceUnavailable, errorBody("reading the cluster's nodes: "+err.Error()))
		return
	}
	if list {
		status, body := mergePages(answers, pageLimit(query))
		writeRaw(w, status, body)
		return
	}
	status, body := firstFound(answers)
	writeRaw(w, status, body)
}

// op asks every node to carry out an operation on an event or delivery:
// the one holding it does (two, should a takeover have applied it twice),
// the others answer 404. The answer is the first 2xx, else the first that
// says more than 404, else 404.
func (c clusterReads) op(w http.ResponseWriter, r *http.Request) {
	body, ok := c.opBody(w, r)
	if !ok {
		return
	}
	// The node that holds it answers 2xx: no need to wait for the others.
	answers, err := c.gather(r.Context(), readRequest{Method: http.MethodPost, Path: r.URL.Path, Query: r.URL.RawQuery, Body: body}, succeeded)
	if err != nil {
		writeRaw(w, http.StatusServiceUnavailable, errorBody("asking the cluster's nodes: "+err.Error()))
		return
	}
	for _, a := range answers {
		if a.Status >= 200 && a.Status < 300 {
			writeRaw(w, a.Status, a.Body)
			return
		}
	}
	status, out := firstFound(answers)
	writeRaw(w, status, out)
}

// webhookFigures serves the webhook list with each webhook's figures added
// up over every node's event DBs: the list is this node's (every node has
// the same webhooks), the counts every node's. An event applied on two
// nodes after a takeover counts twice.
func (c clusterReads) webhookFigures(w http.ResponseWriter, r *http.Request) {
	var own *readAnswer // a tenant's own list, from this node
	if c.tenant {
		rec := c.serveLocal(r, r.Method, r.URL.Path)
		if rec.status != http.StatusOK {
			writeRaw(w, rec.status, rec.body.Bytes())
			return
		}
		own = &readAnswer{Status: rec.status, Body: rec.body.Bytes()}
	}
	answers, err := c.gather(r.Context(), readRequest{Path: webhookList, Query: r.URL.RawQuery}, nil)
	if err != nil {
		writeRaw(w, http.StatusServiceUnavailable, errorBody("reading the cluster's nodes: "+err.Error()))
		return
	}
	status, body := mergeFigures(answers, c.d.cluster.Node(), own)
	writeRaw(w, status, body)
}

// tenantMay, on the tenant face, checks that the caller's API key owns
// the webhook of r's path, as this node's tenant API answers for it: if
// not, that answer (401, 404) is written and it returns false.
func (c clusterReads) tenantMay(w http.ResponseWriter, r *http.Request) bool {
	if !c.tenant {
		return true
	}
	parts, ok := webhookPath(r.URL.Path)
	if !ok {
		writeRaw(w, http.StatusNotFound, errorBody("not found"))
		return false
	}
	rec := c.serveLocal(r, http.MethodGet, admin.Prefix+"/webhooks/"+url.PathEscape(parts[0]))
	if rec.status != http.StatusOK {
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		writeRaw(w, rec.status, rec.body.Bytes())
		return false
	}
	return true
}

// serveLocal answers a GET of path with the caller's credentials on this
// node's face.
func (c clusterReads) serveLocal(r *http.Request, method, path string) *recorder {
	lr := r.Clone(r.Context())
	lr.Method, lr.Body, lr.ContentLength = method, http.NoBody, 0
	lr.URL = &url.URL{Path: path, RawQuery: r.URL.RawQuery}
	lr.RequestURI = ""
	if path != r.URL.Path {
		lr.URL.RawQuery = ""
	}
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	c.local.ServeHTTP(rec, lr)
	return rec
}

// mergeFigures adds up the webhooks' stats of every node's list into own
// when set (a tenant's list), else into the list of node self (of the
// first 200 when self did not answer).
func mergeFigures(answers []readAnswer, self string, own *readAnswer) (int, []byte) {
	type list struct {
		Webhooks []map[string]json.RawMessage `json:"webhooks"`
	}
	type stats struct {
		Events      int            `json:"events"`
		LastEventAt *time.Time     `json:"last_event_at,omitempty"`
		Deliveries  map[string]int `json:"deliveries"`
	}
	var base *list
	sums := map[string]*stats{}
	errs := map[string][]string{}
	for _, a := range answers {
		if a.Status != http.StatusOK {
			continue
		}
		var l list
		if err := json.Unmarshal(a.Body, &l); err != nil {
			continue
		}
		if base == nil || a.Node == self {
			base = &l
		}
		for _, wh := range l.Webhooks {
			var id string
			_ = json.Unmarshal(wh["id"], &id)
			var st stats
			if raw, ok := wh["stats"]; !ok || json.Unmarshal(raw, &st) != nil {
				var e string
				_ = json.Unmarshal(wh["stats_error"], &e)
				errs[id] = append(errs[id], a.Node+": "+e)
				continue
			}
			sum := sums[id]
			if sum == nil {
				sum = &stats{Deliveries: map[string]int{}}
				sums[id] = sum
			}
			sum.Events += st.Events
			if st.LastEventAt != nil && (sum.LastEventAt == nil || st.LastEventAt.After(*sum.LastEventAt)) {
				sum.LastEventAt = st.LastEventAt
			}
			for k, n := range st.Deliveries {
				sum.Deliveries[k] += n
			}
		}
	}
	if own != nil {
		base = new(list)
		if err := json.Unmarshal(own.Body, base); err != nil {
			return http.StatusInternalServerError, errorBody("this node's webhook list does not decode")
		}
	}
	if base == nil {
		return firstFound(answers)
	}
	for _, wh := range base.Webhooks {
		var id string
		_ = json.Unmarshal(wh["id"], &id)
		delete(wh, "stats")
		delete(wh, "stats_error")
		if sum := sums[id]; sum != nil {
			wh["stats"] = mustJSON(sum)
		}
		if e := errs[id]; len(e) > 0 {
			wh["stats_error"] = mustJSON(strings.Join(e, "; "))
		}
	}
	return http.StatusOK, mustJSON(base)
}

// gather asks every node, this one included, and decodes their answers.
// Those that do not decode are logged and left out.
// enough, if set, ends the wait at the first answer it accepts.
func (c clusterReads) gather(ctx context.Context, rq readRequest, enough func(cluster.Reply) bool) ([]readAnswer, error) {
	replies, err := c.d.cluster.Gather(ctx, mustJSON(rq), enough)
	if err != nil && len(replies) == 0 {
		return nil, err
	}
	out := make([]readAnswer, 0, len(replies))
	for _, rp := range replies {
		a := readAnswer{Node: rp.Node}
		if err := json.Unmarshal(rp.Data, &a); err != nil || a.Status == 0 {
			c.d.opts.Logger.Warn("a node's answer to an event-log read does not decode: left out",
				zap.String("node", rp.Node), zap.Int("bytes", len(rp.Data)))
			continue
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no node answered")
	}
	return out, nil
}

// succeeded says whether a node's answer is a 2xx.
func succeeded(r cluster.Reply) bool {
	var a readAnswer
	return json.Unmarshal(r.Data, &a) == nil && a.Status >= 200 && a.Status < 300
}

// receivedAt finds the time of receipt of event id of the read's webhook
// on whichever node holds it.
func (c clusterReads) receivedAt(r *http.Request, id string) (time.Time, int, []byte) {
	path := strings.TrimSuffix(r.URL.Path, "/") + "/" + url.PathEscape(id)
	answers, err := c.gather(r.Context(), readRequest{Path: path}, succeeded)
	if err != nil {
		return time.Time{}, http.StatusServiceUnavailable, errorBody("reading the cluster's nodes: " + err.Error())
	}
	status, body := firstFound(answers)
	if status != http.StatusOK {
		return time.Time{}, status, body
	}
	var ev struct {
		ReceivedAt time.Time `json:"received_at"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return time.Time{}, http.StatusInternalServerError, errorBody("the cursor's event does not decode")
	}
	return ev.ReceivedAt, http.StatusOK, nil
}

// firstFound is the first 200 among the answers; without one, the first
// that says more than 404 (a node holds it but cannot send it), else the
// first (404 for an event no node holds, a 400 every node gives).
func firstFound(answers []readAnswer) (int, []byte) {
	for _, a := range answers {
		if a.Status == http.StatusOK {
			return a.Status, a.Body
		}
	}
	for _, a := range answers {
		if a.Status != http.StatusNotFound {
			return a.Status, a.Body
		}
	}
	return answers[0].Status, answers[0].Body
}

// mergePages merges the nodes' pages of one webhook's events, newest first
// by time of receipt then id (as each node orders its own), each event
// once (one applied on two nodes after a takeover is listed once, as the
// node with more deliveries has it), cut to limit.
func mergePages(answers []readAnswer, limit int) (int, []byte) {
	type row struct {
		ID         string            `json:"id"`
		ReceivedAt time.Time         `json:"received_at"`
		Deliveries []json.RawMessage `json:"deliveries"`
	}
	type page struct {
		Events []json.RawMessage `json:"events"`
	}
	var (
		rows []row
		raw  = map[string]json.RawMessage{}
		// deliveries counts those of the copy kept in raw.
		deliveries = map[string]int{}
		found      bool
		full       bool
	)
	for _, a := range answers {
		if a.Status != http.StatusOK {
			continue
		}
		found = true
		var p page
		if err := json.Unmarshal(a.Body, &p); err != nil {
			continue
		}
		full = full || len(p.Events) >= limit
		for _, e := range p.Events {
			var rw row
			if err := json.Unmarshal(e, &rw); err != nil {
				continue
			}
			if n, seen := deliveries[rw.ID]; seen {
				if n >= len(rw.Deliveries) {
					continue
				}
			} else {
				rows = append(rows, rw)
			}
			raw[rw.ID], deliveries[rw.ID] = e, len(rw.Deliveries)
		}
	}
	if !found {
		return firstFound(answers)
	}
	slices.SortFunc(rows, func(a, b row) int {
		if c := b.ReceivedAt.Compare(a.ReceivedAt); c != 0 {
			return c
		}
		return cmp.Compare(b.ID, a.ID)
	})
	if len(rows) > limit {
		rows, full = rows[:limit], true
	}
	events := make([]json.RawMessage, len(rows))
	for i, rw := range rows {
		events[i] = raw[rw.ID]
	}
	out := map[string]any{"events": events}
	if full && len(rows) == limit {
		last := rows[len(rows)-1]
		out["next_before"], out["next_before_at"] = last.ID, last.ReceivedAt
	}
	return http.StatusOK, mustJSON(out)
}

// pageLimit is the page size the admin API would use for query (it has
// checked the value itself: a bad one is a 400 from every node).
func pageLimit(query url.Values) int {
	n, err := strconv.Atoi(query.Get("limit"))
	if err != nil || n < 1 {
		return admin.DefaultEventsPage
	}
	return min(n, admin.MaxEventsPage)
}

// recorder keeps what a handler writes, for answerRead.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
	wrote  bool
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(status int) {
	if !r.wrote {
		r.status, r.wrote = status, true
	}
}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	if status == http.StatusNoContent || len(body) == 0 || string(body) == "null" {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func errorBody(msg string) []byte { return mustJSON(map[string]string{"error": msg}) }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte(`{"error":"encoding an answer failed"}`)
	}
	return b
}
