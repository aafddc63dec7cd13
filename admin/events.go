package admin

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/webhooker/caddy-webhooker/storage"
)

// DefaultEventsPage is the event list's page without ?limit=, and
// MaxEventsPage caps ?limit=.
const (
	DefaultEventsPage = 50
	MaxEventsPage     = 500
)

type eventRow struct {
	ID          string         `json:"id"`
	Method      string         `json:"method"`
	Path        string         `json:"path"`
	ContentType string         `json:"content_type"`
	BodySize    int            `json:"body_size"`
	RemoteAddr  string         `json:"remote_addr"`
	ReceivedAt  time.Time      `json:"received_at"`
	Deliveries  []deliveryView `json:"deliveries"`
}

type deliveryView struct {
	ID            string                 `json:"id"`
	TargetID      string                 `json:"target_id"`
	TargetName    string                 `json:"target_name,omitempty"`
	TargetType    storage.TargetType     `json:"target_type,omitempty"`
	Status        storage.DeliveryStatus `json:"status"`
	Attempts      int                    `json:"attempts"`
	NextAttemptAt *time.Time             `json:"next_attempt_at,omitempty"`
	LastError     string                 `json:"last_error,omitempty"`
	// Redelivery: an earlier delivery of the same event to the same target
	// exists; this one was asked for by an operator.
	Redelivery bool         `json:"redelivery,omitempty"`
	CreatedAt  time.Time    `json:"created_at"`
	UpdatedAt  time.Time    `json:"updated_at"`
	Results    []resultView `json:"results,omitempty"`
}

type resultView struct {
	Attempt              int       `json:"attempt"`
	StartedAt            time.Time `json:"started_at"`
	DurationMS           float64   `json:"duration_ms"`
	StatusCode           int       `json:"status_code,omitempty"`
	Error                string    `json:"error,omitempty"`
	ResponseBody         string    `json:"response_body,omitempty"`
	ResponseBodyEncoding string    `json:"response_body_encoding,omitempty"`
}

// text shows bytes as text when they are UTF-8, else as base64.
func text(b []byte) (string, string) {
	if utf8.Valid(b) {
		return string(b), "text"
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}

func deliveryOf(d storage.Delivery, targets map[string]storage.Target) deliveryView {
	v := deliveryView{
		ID: d.ID, TargetID: d.TargetID, Status: d.Status, Attempts: d.Attempts,
		LastError: d.LastError, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt,
	}
	if t, ok := targets[d.TargetID]; ok {
		v.TargetName, v.TargetType = t.Name, t.Type
	}
	if !d.NextAttemptAt.IsZero() && d.Status == storage.DeliveryRetrying {
		next := d.NextAttemptAt
		v.NextAttemptAt = &next
	}
	return v
}

// deliveriesOf shows the deliveries of one event, in id order (which is
// the order of creation), each but the first to a target marked as a
// redelivery.
func deliveriesOf(ds []storage.Delivery, targets map[string]storage.Target) []deliveryView {
	views := make([]deliveryView, len(ds))
	seen := make(map[string]bool, len(ds))
	for i, d := range ds {
		views[i] = deliveryOf(d, targets)
		views[i].Redelivery = seen[d.TargetID]
		seen[d.TargetID] = true
	}
	return views
}

// withEventDB runs fn on the event DB of the request's webhook.
func (h *Handler) withEventDB(r *http.Request, fn func(*storage.Webhook, *storage.WebhookDB) error) error {
	wh, err := h.webhookFor(r)
	if err != nil {
		return err
	}
	return h.b.Events.With(r.Context(), wh.ID, func(db *storage.WebhookDB) error { return fn(wh, db) })
}

func (h *Handler) listEvents(w http.ResponseWriter, r *http.Request) error {
	q := storage.EventQuery{Limit: DefaultEventsPage}
	params := r.URL.Query()
	if s := params.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return errorf(http.StatusBadRequest, "limit %q: want a whole number from 1 to %d", s, MaxEventsPage)
		}
		q.Limit = min(n, MaxEventsPage)
	}
	if s := params.Get("before"); s != "" {
		if storage.ValidateID(s) != nil {
			return errorf(http.StatusBadRequest, "before %q: want the id of an event", s)
		}
		q.Before = s
	}
	var err error
	if q.BeforeAt, err = timeParam(params, "before_at"); err != nil {
		return err
	}
	switch s := storage.DeliveryStatus(params.Get("status")); s {
	case "", storage.DeliveryPending, storage.DeliveryRetrying, storage.DeliveryDelivered, storage.DeliveryFailed:
		q.Status = s
	default:
		return errorf(http.StatusBadRequest, "status %q: want pending, retrying, delivered or failed", s)
	}
	if q.From, err = timeParam(params, "from"); err != nil {
		return err
	}
	if q.To, err = timeParam(params, "to"); err != nil {
		return err
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return errorf(http.StatusBadRequest, "from %s is not before to %s: the range is empty", params.Get("from"), params.Get("to"))
	}
	if s := params.Get("q"); s != "" {
		switch {
		case len(s) > storage.MaxBodySearch:
			return errorf(http.StatusBadRequest, "q: %d bytes, at most %d", len(s), storage.MaxBodySearch)
		case storage.ValidateID(s) == nil:
			q.EventID = s
		default:
			q.BodyContains = s
		}
	}
	targetID := params.Get("target")
	if targetID != "" && storage.ValidateID(targetID) != nil {
		return errorf(http.StatusBadRequest, "target %q: want the id of a target of this webhook", targetID)
	}
	q.TargetID = targetID
	return h.withEventDB(r, func(wh *storage.Webhook, db *storage.WebhookDB) error {
		targets, err := h.b.Main.TargetsOf(r.Context(), wh.ID)
		if err != nil {
			return err
		}
		// A deleted target still names the deliveries it had: it filters too.
		if _, ok := targets[targetID]; targetID != "" && !ok {
			return errorf(http.StatusBadRequest, "target %q: webhook %s has no such target", targetID, wh.Name)
		}
		events, err := db.ListEvents(r.Context(), q)
		if err != nil {
			return err
		}
		rows := make([]eventRow, len(events))
		for i, ev := range events {
			rows[i] = eventRow{
				ID: ev.ID, Method: ev.Method, Path: ev.Path, ContentType: ev.ContentType,
				BodySize: ev.BodySize, RemoteAddr: ev.RemoteAddr, ReceivedAt: ev.ReceivedAt,
				Deliveries: deliveriesOf(ev.Deliveries, targets),
			}
		}
		page := map[string]any{"events": rows}
		if len(rows) == q.Limit {
			last := rows[len(rows)-1]
			page["next_before"], page["next_before_at"] = last.ID, last.ReceivedAt
		}
		writeJSON(w, http.StatusOK, page)
		return nil
	})
}

// timeParam reads query parameter name as an RFC 3339 time; absent is zero.
func timeParam(params url.Values, name string) (time.Time, error) {
	return parseTime(name, params.Get(name))
}

// parseTime reads s, the value of a query parameter or body field name, as
// an RFC 3339 time; "" is zero.
func parseTime(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errorf(http.StatusBadRequest, "%s %q: want an RFC 3339 time such as 2025-06-01T12:00:00Z", name, s)
	}
	// Times are stored as Unix nanoseconds: one outside 1678 to 2262 would
	// wrap around and select something else.
	if !time.Unix(0, t.UnixNano()).Equal(t) {
		return time.Time{}, errorf(http.StatusBadRequest, "%s %q: out of range (years 1678 to 2262)", name, s)
	}
	return t, nil
}

type eventDetail struct {
	ID           string      `json:"id"`
	WebhookID    string      `json:"webhook_id"`
	EntrypointID string      `json:"entrypoint_id"`
	Method       string      `json:"method"`
	Path         string      `json:"path"`
	Query        string      `json:"query"`
	Headers      http.Header `json:"headers"`
	ContentType  string      `json:"content_type"`
	Body         string      `json:"body"`
	BodyEncoding string      `json:"body_encoding"`
	BodySize     int         `json:"body_size"`
	RemoteAddr   string      `json:"remote_addr"`
	ReceivedAt   time.Time   `json:"received_at"`
	// Verified is the verify scheme the event passed at its entrypoint,
	// absent when the entrypoint verified nothing.
	Verified   string         `json:"verified,omitempty"`
	Deliveries []deliveryView `json:"deliveries"`
}

func (h *Handler) getEvent(w http.ResponseWriter, r *http.Request) error {
	evid, err := pathID(r, "evid", "event")
	if err != nil {
		return err
	}
	return h.withEventDB(r, func(wh *storage.Webhook, db *storage.WebhookDB) error {
		ev, err := db.Event(r.Context(), evid)
		if err != nil {
			return err
		}
		ds, err := db.Deliveries(r.Context(), evid)
		if err != nil {
			return err
		}
		targets, err := h.b.Main.TargetsOf(r.Context(), wh.ID)
		if err != nil {
			return err
		}
		out := eventDetail{
			ID: ev.ID, WebhookID: wh.ID, EntrypointID: ev.EntrypointID, Method: ev.Method, Path: ev.Path,
			Query: ev.Query, Headers: maskCredentials(ev.Headers), ContentType: ev.ContentType, BodySize: len(ev.Body),
			RemoteAddr: ev.RemoteAddr, ReceivedAt: ev.ReceivedAt, Verified: ev.Verified, Deliveries: deliveriesOf(ds, targets),
		}
		out.Body, out.BodyEncoding = text(ev.Body)
		for i, d := range ds {
			v := &out.Deliveries[i]
			results, err := db.DeliveryResults(r.Context(), d.ID)
			if err != nil {
				return err
			}
			for _, res := range results {
				rv := resultView{
					Attempt: res.Attempt, StartedAt: res.StartedAt, StatusCode: res.StatusCode, Error: res.Error,
					DurationMS: float64(res.Duration.Microseconds()) / 1000,
				}
				if len(res.ResponseBody) > 0 {
					rv.ResponseBody, rv.ResponseBodyEncoding = text(res.ResponseBody)
				}
				v.Results = append(v.Results, rv)
			}
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	})
}

type redeliverRequest struct {
	// TargetID limits the redelivery to one target; default: every active one.
	TargetID string `json:"target_id"`
}

// redeliver sends an event again: new deliveries, run by the engine and
// recorded like any other.
func (h *Handler) redeliver(w http.ResponseWriter, r *http.Request) error {
	evid, err := pathID(r, "evid", "event")
	if err != nil {
		return err
	}
	var req redeliverRequest
	if err := decode(w, r, &req, true); err != nil {
		return err
	}
	var (
		wh      *storage.Webhook
		targets []storage.Target
	)
	err = h.withEventDB(r, func(w *storage.Webhook, db *storage.WebhookDB) error {
		// An unknown event is 404 whatever the targets are.
		if _, err := db.Event(r.Context(), evid); err != nil {
			return err
		}
		wh = w
		for _, t := range wh.Targets {
			if (req.TargetID == "" && t.Active) || t.ID == req.TargetID {
				targets = append(targets, t)
			}
		}
		switch {
		case req.TargetID != "" && len(targets) == 0:
			return errorf(http.StatusNotFound, "webhook %s has no target with id %q", wh.Name, req.TargetID)
		case len(targets) == 0:
			return errorf(http.StatusConflict, "webhook %s has no active target to deliver to", wh.Name)
		case !targets[0].Active:
			return errorf(http.StatusConflict, "target %s is disabled: enable it first", targets[0].Name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	deliveries, err := h.b.Redeliver(r.Context(), wh, evid, targets)
	if err != nil {
		return err
	}
	byID := make(map[string]storage.Target, len(targets))
	for _, t := range targets {
		byID[t.ID] = t
	}
	views := make([]deliveryView, len(deliveries))
	for i, d := range deliveries {
		views[i] = deliveryOf(d, byID)
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"deliveries": views})
	return nil
}
