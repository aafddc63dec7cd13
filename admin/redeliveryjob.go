package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/webhooker/caddy-webhooker/storage"
)

// Bulk redelivery: after an outage, send again every event whose latest
// delivery to a target is in a status (failed, say), within a time range,
// at a bounded rate, in the background.
//
// Jobs are kept in memory: a restart ends them (what was redelivered is
// durable: each redelivery is a stored delivery the engine recovers like
// any other), and a new job picks up what is still failed.

const (
	defaultRedeliveryRate = 50   // events per second
	maxRedeliveryRate     = 1000 // events per second
	// redeliveryPage is how many matches a job reads at a time.
	redeliveryPage = 100
	// maxFinishedJobs bounds the finished jobs kept for their status; the
	// oldest go first.
	maxFinishedJobs = 100
)

// Job states.
const (
	jobRunning   = "running"
	jobDone      = "done"
	jobFailed    = "failed"
	jobCancelled = "cancelled"
)

// jobIDKey holds the id a bulk redelivery job takes (WithJobID).
type jobIDKey struct{}

// WithJobID makes a bulk redelivery started with ctx take id (a UUID)
// rather than a new one: in cluster mode every node runs one job on the
// events it holds, under the id the node asked gave them all.
func WithJobID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, jobIDKey{}, id)
}

type bulkRedeliverRequest struct {
	// TargetID limits the redelivery to one target; "": every active one.
	TargetID string                 `json:"target_id"`
	Status   storage.DeliveryStatus `json:"status"`
	// From and To are RFC 3339 times bounding the event's time of receipt
	// (from inclusive, to exclusive). To absent: the time of the request,
	// so that a job has a fixed end.
	From string `json:"from"`
	To   string `json:"to"`
	// DryRun counts the events that would be redelivered, and does nothing.
	DryRun bool `json:"dry_run"`
	// Rate is at most how many events a second are redelivered.
	Rate *int `json:"rate"`
}

// JobView is a bulk redelivery job as the API shows it (in cluster mode,
// datadir adds up every node's).
type JobView struct {
	ID          string     `json:"id"`
	WebhookID   string     `json:"webhook_id"`
	State       string     `json:"state"`
	Matched     int        `json:"matched"`
	Redelivered int        `json:"redelivered"`
	Errors      int        `json:"errors"`
	LastError   string     `json:"last_error"`
	StartedAt   time.Time  `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at"`
}

type redeliveryJob struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the job's goroutine ends

	mu   sync.Mutex
	view JobView
}

func (j *redeliveryJob) snapshot() JobView {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.view
}

func (j *redeliveryJob) update(fn func(v *JobView)) {
	j.mu.Lock()
	defer j.mu.Unlock()
	fn(&j.view)
}

// RedeliveryJobs are the bulk redelivery jobs of one data directory's
// Backends (Backend.Jobs). The zero value is ready.
type RedeliveryJobs struct {
	mu   sync.Mutex
	byID map[string]*redeliveryJob
	// order is the ids by start, for dropping the oldest finished jobs.
	order []string
}

// add registers a job for webhookID unless one is running for it, or the
// Backend's lifetime is over.
func (js *RedeliveryJobs) add(background context.Context, j *redeliveryJob) error {
	js.mu.Lock()
	defer js.mu.Unlock()
	// Checked under the lock, so that Wait, which runs after Background
	// ended, sees every job that started.
	if err := background.Err(); err != nil {
		return errorf(http.StatusServiceUnavailable, "the server is shutting down: no new redelivery job")
	}
	if js.byID == nil {
		js.byID = make(map[string]*redeliveryJob)
	}
	finished := 0
	for _, id := range js.order {
		v := js.byID[id].snapshot()
		if v.WebhookID == j.view.WebhookID && v.State == jobRunning {
			return errorf(http.StatusConflict, "redelivery job %s is still running on this webhook: wait for it or cancel it", v.ID)
		}
		if v.State != jobRunning {
			finished++
		}
	}
	for i := 0; finished >= maxFinishedJobs && i < len(js.order); {
		if id := js.order[i]; js.byID[id].snapshot().State != jobRunning {
			delete(js.byID, id)
			js.order = slices.Delete(js.order, i, i+1)
			finished--
			continue
		}
		i++
	}
	js.byID[j.view.ID] = j
	js.order = append(js.order, j.view.ID)
	return nil
}

func (js *RedeliveryJobs) get(id string) (*redeliveryJob, bool) {
	js.mu.Lock()
	defer js.mu.Unlock()
	j, ok := js.byID[id]
	return j, ok
}

// WaitJobs waits until every bulk redelivery job has ended. Call it after
// Background has ended (which stops them and refuses new ones), before the
// storage they write to closes.
func (b *Backend) WaitJobs() { b.jobs().Wait() }

// Wait waits until every job has ended: see Backend.WaitJobs.
func (js *RedeliveryJobs) Wait() {
	js.mu.Lock()
	var done []chan struct{}
	for _, j := range js.byID {
		done = append(done, j.done)
	}
	js.mu.Unlock()
	for _, c := range done {
		<-c
	}
}

// bulkRedeliver counts (dry_run) or starts a bulk redelivery job.
func (h *Handler) bulkRedeliver(w http.ResponseWriter, r *http.Request) error {
	wh, err := h.webhookFor(r)
	if err != nil {
		return err
	}
	var req bulkRedeliverRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	if req.Status == "" {
		return errorf(http.StatusBadRequest, "status is required: failed, delivered, retrying or pending")
	}
	if err := req.Status.Validate(); err != nil {
		return errorf(http.StatusBadRequest, "status: %v", err)
	}
	rate := defaultRedeliveryRate
	if req.Rate != nil {
		if *req.Rate < 1 || *req.Rate > maxRedeliveryRate {
			return errorf(http.StatusBadRequest, "rate %d: want 1 to %d events a second", *req.Rate, maxRedeliveryRate)
		}
		rate = *req.Rate
	}
	sel := storage.RedeliverySelection{Status: req.Status}
	if sel.From, err = parseTime("from", req.From); err != nil {
		return err
	}
	if sel.To, err = parseTime("to", req.To); err != nil {
		return err
	}
	if sel.To.IsZero() {
		sel.To = time.Now()
	}
	if !sel.From.IsZero() && !sel.From.Before(sel.To) {
		return errorf(http.StatusBadRequest, "from %s is not before to %s: the range is empty",
			sel.From.Format(time.RFC3339Nano), sel.To.Format(time.RFC3339Nano))
	}
	targets := make(map[string]storage.Target)
	for _, t := range wh.Targets {
		if (req.TargetID == "" && t.Active) || t.ID == req.TargetID {
			targets[t.ID] = t
		}
	}
	switch {
	case req.TargetID != "" && len(targets) == 0:
		return errorf(http.StatusBadRequest, "target_id %q: webhook %s has no such target", req.TargetID, wh.Name)
	case len(targets) == 0:
		return errorf(http.StatusConflict, "webhook %s has no active target to deliver to", wh.Name)
	case req.TargetID != "" && !targets[req.TargetID].Active:
		return errorf(http.StatusConflict, "target %s is disabled: enable it first", targets[req.TargetID].Name)
	}
	for id := range targets {
		sel.TargetIDs = append(sel.TargetIDs, id)
	}
	slices.Sort(sel.TargetIDs)

	var matched int
	err = h.b.Events.With(r.Context(), wh.ID, func(db *storage.WebhookDB) error {
		matched, err = db.CountRedeliveries(r.Context(), sel)
		return err
	})
	if err != nil {
		return err
	}
	if req.DryRun {
		writeJSON(w, http.StatusOK, map[string]int{"matched": matched})
		return nil
	}

	// The job outlives the request: it runs on the Backend's lifetime.
	id, ok := r.Context().Value(jobIDKey{}).(string)
	if !ok {
		id = uuid.NewString()
	}
	ctx, cancel := context.WithCancel(h.b.background())
	j := &redeliveryJob{cancel: cancel, done: make(chan struct{}), view: JobView{
		ID: id, WebhookID: wh.ID, State: jobRunning, Matched: matched, StartedAt: time.Now().UTC(),
	}}
	if err := h.b.jobs().add(h.b.background(), j); err != nil {
		cancel()
		return err
	}
	go h.b.runRedelivery(ctx, j, wh, sel, targets, rate)
	writeJSON(w, http.StatusAccepted, map[string]any{"job": j.snapshot()})
	return nil
}

// runRedelivery pages through the selection by event id and redelivers
// each event to its selected targets, one event per tick of the rate. An
// event that cannot be redelivered is counted in errors and the job goes
// on; a selection that cannot be read fails the job.
func (b *Backend) runRedelivery(ctx context.Context, j *redeliveryJob, wh *storage.Webhook,
	sel storage.RedeliverySelection, targets map[string]storage.Target, rate int) {
	defer close(j.done)
	defer j.cancel()
	finish := func(state, lastError string) {
		j.update(func(v *JobView) {
			now := time.Now().UTC()
			v.State, v.FinishedAt = state, &now
			if lastError != "" {
				v.LastError = lastError
			}
		})
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	after := ""
	for {
		var page []storage.RedeliveryMatch
		err := b.Events.With(ctx, wh.ID, func(db *storage.WebhookDB) error {
			var err error
			page, err = db.RedeliveryPage(ctx, sel, after, redeliveryPage)
			return err
		})
		switch {
		case ctx.Err() != nil:
			finish(jobCancelled, "")
			return
		case err != nil:
			finish(jobFailed, fmt.Sprintf("select events to redeliver: %v", err))
			return
		case len(page) == 0:
			finish(jobDone, "")
			return
		}
		for _, m := range page {
			select {
			case <-ctx.Done():
				finish(jobCancelled, "")
				return
			case <-tick.C:
			}
			to := make([]storage.Target, 0, len(m.TargetIDs))
			for _, id := range m.TargetIDs {
				to = append(to, targets[id])
			}
			_, err := b.Redeliver(ctx, wh, m.EventID, to)
			if err != nil && errors.Is(err, context.Canceled) && ctx.Err() != nil {
				finish(jobCancelled, "")
				return
			}
			j.update(func(v *JobView) {
				if err != nil {
					v.Errors++
					v.LastError = fmt.Sprintf("event %s: %v", m.EventID, err)
				} else {
					v.Redelivered++
				}
			})
			after = m.EventID
		}
	}
}

// redeliveryJobOf resolves the {job} of a request on the request's
// webhook: another webhook's job, a tenant's included, is not found.
func (h *Handler) redeliveryJobOf(r *http.Request) (*redeliveryJob, error) {
	wh, err := h.webhookFor(r)
	if err != nil {
		return nil, err
	}
	id, err := pathID(r, "job", "redelivery job")
	if err != nil {
		return nil, err
	}
	j, ok := h.b.jobs().get(id)
	if !ok || j.snapshot().WebhookID != wh.ID {
		return nil, errorf(http.StatusNotFound, "no redelivery job with id %q on webhook %s", id, wh.Name)
	}
	return j, nil
}

func (h *Handler) getRedeliveryJob(w http.ResponseWriter, r *http.Request) error {
	j, err := h.redeliveryJobOf(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, j.snapshot())
	return nil
}

// cancelRedeliveryJob stops a job and answers it once it has stopped: what
// it redelivered stays redelivered. A finished job is answered as it is.
func (h *Handler) cancelRedeliveryJob(w http.ResponseWriter, r *http.Request) error {
	j, err := h.redeliveryJobOf(r)
	if err != nil {
		return err
	}
	j.cancel()
	select {
	case <-j.done:
	case <-r.Context().Done():
		return r.Context().Err()
	}
	writeJSON(w, http.StatusOK, j.snapshot())
	return nil
}
