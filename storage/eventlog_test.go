package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// openEventDB gives a fresh event DB, open for the whole test.
func openEventDB(t *testing.T) *WebhookDB {
	t.Helper()
	m := newManager(t, ManagerOptions{})
	id := newID(t)
	var db *WebhookDB
	h, err := m.acquire(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.release(m) })
	db = h.db
	return db
}

// storeEvents stores events received at the given times, each with one
// pending delivery per target, in one write; it returns them in that order.
func storeEvents(t *testing.T, db *WebhookDB, times []time.Time, targets ...string) []*Event {
	t.Helper()
	ids := make([]string, len(times))
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7()).String()
	}
	return storeEventsWithIDs(t, db, ids, times, targets...)
}

func storeEventsWithIDs(t *testing.T, db *WebhookDB, ids []string, times []time.Time, targets ...string) []*Event {
	t.Helper()
	events := make([]*Event, len(times))
	deliveries := make([][]Delivery, len(times))
	for i, at := range times {
		events[i] = &Event{ID: ids[i], EntrypointID: "ep", EntrypointKey: "key",
			Method: http.MethodPost, Path: "/hooks/key", Headers: http.Header{"X-N": {fmt.Sprint(i)}},
			Body: []byte(fmt.Sprintf(`{"n":%d}`, i)), ContentType: "application/json", ReceivedAt: at}
		for _, target := range targets {
			deliveries[i] = append(deliveries[i], Delivery{ID: uuid.Must(uuid.NewV7()).String(),
				EventID: events[i].ID, TargetID: target, Status: DeliveryPending})
		}
	}
	err := db.commits.submit(&commitRequest{write: func(w *writeTx) error {
		for i, ev := range events {
			headers, err := json.Marshal(ev.Headers)
			if err != nil {
				return err
			}
			if err := w.insertEvent(ev, headers, deliveries[i]); err != nil {
				return err
			}
		}
		return nil
	}})
	if err != nil {
		t.Fatalf("store %d events: %v", len(times), err)
	}
	return events
}

// setStatus records one attempt that leaves the delivery of event to target in status.
func setStatus(t *testing.T, db *WebhookDB, eventID, target string, status DeliveryStatus) {
	t.Helper()
	ds, err := db.Deliveries(context.Background(), eventID)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.TargetID != target {
			continue
		}
		out := DeliveryOutcome{Status: status}
		if status == DeliveryRetrying {
			out.NextAttemptAt = time.Now().Add(time.Hour)
		}
		r := DeliveryResult{DeliveryID: d.ID, Attempt: d.Attempts + 1, StartedAt: time.Now(), StatusCode: 500,
			ResponseBody: []byte("response")}
		if err := db.RecordAttempt(context.Background(), r, out); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("event %s has no delivery to %s", eventID, target)
}

func listEvents(t *testing.T, db *WebhookDB, q EventQuery) []EventSummary {
	t.Helper()
	page, err := db.ListEvents(context.Background(), q)
	if err != nil {
		t.Fatalf("ListEvents(%+v): %v", q, err)
	}
	return page
}

// newestFirst sorts events the way the event log lists them.
func newestFirst(events []*Event) []string {
	sorted := append([]*Event(nil), events...)
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if !a.ReceivedAt.Equal(b.ReceivedAt) {
			return a.ReceivedAt.After(b.ReceivedAt)
		}
		return a.ID > b.ID
	})
	ids := make([]string, len(sorted))
	for i, ev := range sorted {
		ids[i] = ev.ID
	}
	return ids
}

func TestListEventsPagesCoverEveryEventOnceNewestFirst(t *testing.T) {
	db := openEventDB(t)
	base := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	times := make([]time.Time, 120)
	for i := range times {
		// Out of insertion order, and in threes on the same nanosecond, so
		// that the id breaks ties, also across page boundaries.
		times[i] = base.Add(time.Duration((i*37)%120/3) * time.Second)
	}
	// Random ids: within a tie, the order of the ids is not the order of insertion.
	ids := make([]string, len(times))
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	events := storeEventsWithIDs(t, db, ids, times, "a", "b")
	want := newestFirst(events)

	var got []string
	before := ""
	var sizes []int
	for {
		page := listEvents(t, db, EventQuery{Limit: 50, Before: before})
		sizes = append(sizes, len(page))
		if len(page) == 0 {
			break
		}
		if len(sizes) > 5 {
			t.Fatalf("still paging after %v events: the cursor does not advance", sizes)
		}
		for _, s := range page {
			got = append(got, s.ID)
			if s.Body != nil || s.BodySize != len(fmt.Sprintf(`{"n":%s}`, s.Headers.Get("X-N"))) {
				t.Errorf("event %s: body %q, size %d; want no body and its size", s.ID, s.Body, s.BodySize)
			}
			if len(s.Deliveries) != 2 || s.Deliveries[0].EventID != s.ID || s.Deliveries[0].TargetID == s.Deliveries[1].TargetID {
				t.Errorf("event %s deliveries = %+v", s.ID, s.Deliveries)
			}
			if s.Method != http.MethodPost || s.EntrypointKey != "key" || s.ContentType != "application/json" {
				t.Errorf("event %s = %+v", s.ID, s.Event)
			}
		}
		before = page[len(page)-1].ID
	}
	if fmt.Sprint(sizes) != "[50 50 20 0]" {
		t.Errorf("page sizes = %v, want [50 50 20 0]", sizes)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("paged ids differ from newest first:\n got %v\nwant %v", got, want)
	}
	seen := map[string]bool{}
	for _, id := range got {
		if seen[id] {
			t.Errorf("event %s listed twice", id)
		}
		seen[id] = true
	}
}

func TestListEventsLimit(t *testing.T) {
	db := openEventDB(t)
	if page := listEvents(t, db, EventQuery{}); page == nil || len(page) != 0 {
		t.Errorf("ListEvents of an empty DB = %#v, want an empty slice", page)
	}
	times := make([]time.Time, MaxEventPage+10)
	for i := range times {
		times[i] = time.Unix(1700000000, int64(i))
	}
	storeEvents(t, db, times)
	for _, c := range []struct{ limit, want int }{
		{0, DefaultEventPage}, {-5, DefaultEventPage}, {1, 1}, {120, 120},
		{MaxEventPage, MaxEventPage}, {MaxEventPage + 1, MaxEventPage}, {1 << 30, MaxEventPage},
	} {
		page := listEvents(t, db, EventQuery{Limit: c.limit})
		if len(page) != c.want {
			t.Errorf("Limit %d: %d events, want %d", c.limit, len(page), c.want)
		}
		if len(page) > 0 && len(page[0].Deliveries) != 0 {
			t.Errorf("deliveries of an event with none = %v", page[0].Deliveries)
		}
	}
}

func TestListEventsFiltersByDeliveryStatus(t *testing.T) {
	db := openEventDB(t)
	times := make([]time.Time, 12)
	for i := range times {
		times[i] = time.Unix(1700000000+int64(i), 0)
	}
	events := storeEvents(t, db, times, "a", "b")
	// Event i: a failed when i%3 == 0, delivered otherwise; b delivered when
	// i%4 == 0, retrying when i%4 == 1, pending otherwise.
	wantIDs := map[DeliveryStatus][]*Event{}
	for i, ev := range events {
		a := DeliveryDelivered
		if i%3 == 0 {
			a = DeliveryFailed
		}
		setStatus(t, db, ev.ID, "a", a)
		b := DeliveryPending
		switch i % 4 {
		case 0:
			b = DeliveryDelivered
			setStatus(t, db, ev.ID, "b", b)
		case 1:
			b = DeliveryRetrying
			setStatus(t, db, ev.ID, "b", b)
		}
		wantIDs[a] = append(wantIDs[a], ev)
		if b != a {
			wantIDs[b] = append(wantIDs[b], ev)
		}
	}
	for _, status := range []DeliveryStatus{DeliveryPending, DeliveryRetrying, DeliveryDelivered, DeliveryFailed} {
		var got []string
		for _, s := range listEvents(t, db, EventQuery{Status: status}) {
			got = append(got, s.ID)
			if len(s.Deliveries) != 2 {
				t.Errorf("%s: event %s listed with %d deliveries, want both", status, s.ID, len(s.Deliveries))
			}
		}
		if want := newestFirst(wantIDs[status]); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("status %s: got %v, want %v", status, got, want)
		}
	}
	// The filter pages too.
	want := newestFirst(wantIDs[DeliveryPending])
	first := listEvents(t, db, EventQuery{Status: DeliveryPending, Limit: 2})
	second := listEvents(t, db, EventQuery{Status: DeliveryPending, Limit: 2, Before: first[1].ID})
	var got []string
	for _, s := range append(first, second...) {
		got = append(got, s.ID)
	}
	if strings.Join(got, ",") != strings.Join(want[:4], ",") {
		t.Errorf("two pages of pending = %v, want %v", got, want[:4])
	}

	_, err := db.ListEvents(context.Background(), EventQuery{Status: "lost"})
	wantErr(t, "ListEvents with an unknown status", err, ErrInvalid)
}

func TestListEventsBeforeAnUnknownEventIsNotFound(t *testing.T) {
	db := openEventDB(t)
	storeEvents(t, db, []time.Time{time.Now()})
	_, err := db.ListEvents(context.Background(), EventQuery{Before: uuid.NewString()})
	wantErr(t, "ListEvents before an unknown id", err, ErrNotFound)
}

// TestListEventsBeforeAtAnEventOfAnotherFile: a cursor at an event this
// file does not hold (another node's, in a merged page) pages by its time
// of receipt, ties broken by id, as one of its own would.
func TestListEventsBeforeAtAnEventOfAnotherFile(t *testing.T) {
	db := openEventDB(t)
	base := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	ids := []string{
		"00000000-0000-7000-8000-000000000001", "00000000-0000-7000-8000-000000000003",
		"00000000-0000-7000-8000-000000000005", "00000000-0000-7000-8000-000000000007",
	}
	times := []time.Time{base, base.Add(time.Second), base.Add(time.Second), base.Add(2 * time.Second)}
	storeEventsWithIDs(t, db, ids, times, "a")
	// The foreign cursor sits at base+1s with an id between ...03 and ...05.
	page := listEvents(t, db, EventQuery{Before: "00000000-0000-7000-8000-000000000004", BeforeAt: base.Add(time.Second)})
	var got []string
	for _, s := range page {
		got = append(got, s.ID[len(s.ID)-1:])
	}
	if strings.Join(got, ",") != "3,1" {
		t.Fatalf("page before the foreign cursor = %v, want [3 1]", got)
	}
	// An id of this file wins over BeforeAt: its own time is used.
	page = listEvents(t, db, EventQuery{Before: ids[3], BeforeAt: base})
	if len(page) != 3 {
		t.Fatalf("page before a known id with a wrong BeforeAt: %d events, want 3", len(page))
	}
}

func TestRedeliverAddsPendingDeliveries(t *testing.T) {
	ctx := context.Background()
	db := openEventDB(t)
	ev := storeEvents(t, db, []time.Time{time.Now().Add(-time.Hour)}, "a")[0]
	setStatus(t, db, ev.ID, "a", DeliveryFailed)
	txBefore := db.commits.transactions.Load()

	ds, err := db.Redeliver(ctx, ev.ID, []string{"a", "b"})
	if err != nil {
		t.Fatalf("Redeliver: %v", err)
	}
	if n := db.commits.transactions.Load() - txBefore; n != 1 {
		t.Errorf("Redeliver took %d writes, want 1", n)
	}
	if len(ds) != 2 || ds[0].TargetID != "a" || ds[1].TargetID != "b" {
		t.Fatalf("Redeliver = %+v", ds)
	}
	for _, d := range ds {
		u, err := uuid.Parse(d.ID)
		if err != nil || u.Version() != 7 {
			t.Errorf("delivery id %s is not a UUIDv7", d.ID)
		}
		if d.Status != DeliveryPending || d.EventID != ev.ID || d.Attempts != 0 || d.CreatedAt.IsZero() {
			t.Errorf("new delivery = %+v", d)
		}
		stored, err := db.Delivery(ctx, d.ID)
		if err != nil || stored.Status != DeliveryPending || stored.TargetID != d.TargetID {
			t.Errorf("stored delivery = %+v, %v", stored, err)
		}
	}
	all, _ := db.Deliveries(ctx, ev.ID)
	if len(all) != 3 {
		t.Errorf("event has %d deliveries, want the failed one and two new", len(all))
	}
	if open := openDeliveries(t, db); len(open) != 2 {
		t.Errorf("open deliveries = %+v, want the two new ones", open)
	}
	page := listEvents(t, db, EventQuery{Status: DeliveryPending})
	if len(page) != 1 || len(page[0].Deliveries) != 3 {
		t.Errorf("pending events = %+v", page)
	}

	_, err = db.Redeliver(ctx, uuid.NewString(), []string{"a"})
	wantErr(t, "Redeliver of an unknown event", err, ErrNotFound)
	_, err = db.Redeliver(ctx, uuid.NewString(), nil)
	wantErr(t, "Redeliver of an unknown event to no target", err, ErrNotFound)
	_, err = db.Redeliver(ctx, ev.ID, nil)
	wantErr(t, "Redeliver to no target", err, ErrInvalid)
	if all, _ := db.Deliveries(ctx, ev.ID); len(all) != 3 {
		t.Errorf("failed redeliveries stored something: %d deliveries", len(all))
	}
	if n := countRows(t, db, "SELECT count(*) FROM deliveries"); n != 3 {
		t.Errorf("%d delivery rows, want 3", n)
	}
}

func TestStats(t *testing.T) {
	ctx := context.Background()
	db := openEventDB(t)
	st, err := db.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Events != 0 || st.LastEventAt != nil || len(st.Deliveries) != 4 {
		t.Errorf("stats of an empty DB = %+v", st)
	}
	for status, n := range st.Deliveries {
		if n != 0 {
			t.Errorf("%s = %d in an empty DB", status, n)
		}
	}
	last := time.Unix(1700000500, 42)
	events := storeEvents(t, db, []time.Time{time.Unix(1700000000, 0), last, time.Unix(1700000100, 0)}, "a", "b")
	setStatus(t, db, events[0].ID, "a", DeliveryDelivered)
	setStatus(t, db, events[0].ID, "b", DeliveryFailed)
	setStatus(t, db, events[1].ID, "a", DeliveryRetrying)

	st, err = db.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Events != 3 || st.LastEventAt == nil || !st.LastEventAt.Equal(last) {
		t.Errorf("stats = %+v, want 3 events, the last at %v", st, last)
	}
	want := map[DeliveryStatus]int{DeliveryPending: 3, DeliveryRetrying: 1, DeliveryDelivered: 1, DeliveryFailed: 1}
	if fmt.Sprint(st.Deliveries) != fmt.Sprint(want) {
		t.Errorf("deliveries = %v, want %v", st.Deliveries, want)
	}
}
