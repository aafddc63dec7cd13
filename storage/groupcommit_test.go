package storage

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// openOne returns the open event DB of a fresh webhook. The manager keeps it
// open: nothing else uses the manager, so it is never evicted.
func openOne(t *testing.T) (*WebhookDBManager, string, *WebhookDB) {
	t.Helper()
	m := newManager(t, ManagerOptions{})
	id := newID(t)
	return m, id, handleOf(t, m, id)
}

func TestConcurrentIngestsShareTransactions(t *testing.T) {
	ctx := context.Background()
	_, _, db := openOne(t)
	const n = 200
	targets := pendingTo("t-http", "t-db")

	type result struct {
		ev         *Event
		deliveries []Delivery
		err        error
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ev := &Event{
				EntrypointKey: "k",
				Method:        http.MethodPost,
				Path:          fmt.Sprintf("/hooks/k/%d", i),
				Headers:       http.Header{"X-N": {fmt.Sprint(i)}},
				Body:          []byte(fmt.Sprintf(`{"n":%d}`, i)),
				ContentType:   "application/json",
			}
			<-start
			d, err := db.Ingest(ev, targets)
			results[i] = result{ev, d, err}
		}(i)
	}
	close(start)
	wg.Wait()

	seen := map[string]bool{}
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("ingest %d: %v", i, r.err)
		}
		if seen[r.ev.ID] {
			t.Fatalf("event id %s assigned twice", r.ev.ID)
		}
		seen[r.ev.ID] = true
		if len(r.deliveries) != len(targets) {
			t.Fatalf("ingest %d returned %d deliveries, want %d", i, len(r.deliveries), len(targets))
		}
	}

	if c := countEvents(t, db); c != n {
		t.Errorf("events in the file = %d, want %d", c, n)
	}
	var deliveries int
	if err := db.file.reader.QueryRowContext(ctx, "SELECT count(*) FROM deliveries").Scan(&deliveries); err != nil {
		t.Fatal(err)
	}
	if deliveries != n*len(targets) {
		t.Errorf("deliveries in the file = %d, want %d", deliveries, n*len(targets))
	}
	for i, r := range results {
		got, err := db.Event(ctx, r.ev.ID)
		if err != nil {
			t.Fatalf("event %d not stored: %v", i, err)
		}
		if !bytes.Equal(got.Body, r.ev.Body) || got.Path != r.ev.Path {
			t.Errorf("event %d read back as %s %q, want %s %q", i, got.Path, got.Body, r.ev.Path, r.ev.Body)
		}
		stored, err := db.Deliveries(ctx, r.ev.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !sameDeliveryIDs(stored, r.deliveries) {
			t.Errorf("event %d: stored deliveries %v, returned %v", i, stored, r.deliveries)
		}
	}

	tx := db.commits.transactions.Load()
	t.Logf("%d concurrent ingests committed in %d transactions", n, tx)
	if tx >= n {
		t.Errorf("Transactions = %d for %d concurrent ingests: no group commit", tx, n)
	}
	if tx < 1 {
		t.Errorf("Transactions = %d, want at least 1", tx)
	}
}

func sameDeliveryIDs(a, b []Delivery) bool {
	ids := func(ds []Delivery) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.ID+"/"+d.TargetID+"/"+d.EventID)
		}
		sort.Strings(out)
		return out
	}
	x, y := ids(a), ids(b)
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

func TestSingleIngestIsOneTransaction(t *testing.T) {
	_, _, db := openOne(t)
	if n := db.commits.transactions.Load(); n != 0 {
		t.Fatalf("Transactions of a fresh DB = %d, want 0", n)
	}
	ingestOne(t, db, "one", "t")
	if n := db.commits.transactions.Load(); n != 1 {
		t.Errorf("Transactions after one ingest = %d, want 1", n)
	}
	ingestOne(t, db, "two", "t")
	if n := db.commits.transactions.Load(); n != 2 {
		t.Errorf("Transactions after two sequential ingests = %d, want 2", n)
	}
}

func TestIngestIntoClosedDBFails(t *testing.T) {
	ctx := context.Background()
	m, id, stale := openOne(t)
	if err := m.Close(ctx, id); err != nil {
		t.Fatalf("Close: %v", err)
	}

	const n = 10
	evs := make([]*Event, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range evs {
		evs[i] = &Event{ID: uuid.NewString(), Method: "POST", Path: "/stale", Body: []byte("x")}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var d []Delivery
			d, errs[i] = stale.Ingest(evs[i], pendingTo("t"))
			if errs[i] == nil && d == nil {
				errs[i] = fmt.Errorf("nil deliveries")
			}
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil {
			t.Errorf("ingest %d through a closed handle reported success", i)
		}
	}

	withDB(t, m, id, func(db *WebhookDB) {
		if db == stale {
			t.Fatal("With handed out the closed handle")
		}
		for _, ev := range evs {
			if _, err := db.Event(ctx, ev.ID); err == nil {
				t.Errorf("event %s reported failed but stored", ev.ID)
			}
		}
		// The live handle still ingests.
		ingestOne(t, db, "after", "t")
	})
}

// A batch that fails is rolled back as a whole and every request in it is
// told so: a reported success is always stored, a reported failure never is.
// A write that fails in a shared transaction is rolled back alone (its
// savepoint): it is reported to its caller only, and the other writes of the
// batch commit.
func TestFailedWriteFailsAloneInItsBatch(t *testing.T) {
	ctx := context.Background()
	_, _, db := openOne(t)
	existing := ingestOne(t, db, "existing", "t")

	const n = 120
	evs := make([]*Event, n)
	errs := make([]error, n)
	dup := func(i int) bool { return i%10 == 3 }
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range evs {
		id := uuid.NewString()
		if dup(i) {
			id = existing.ID // violates the primary key: fails its transaction
		}
		evs[i] = &Event{ID: id, Method: "POST", Path: fmt.Sprintf("/p/%d", i), Body: []byte(fmt.Sprint(i))}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			_, errs[i] = db.Ingest(evs[i], pendingTo("a", "b"))
		}(i)
	}
	close(start)
	wg.Wait()

	var ok, failed int
	for i, ev := range evs {
		if dup(i) {
			if errs[i] == nil {
				t.Errorf("ingest %d with a duplicate event id reported success", i)
			}
			continue
		}
		got, err := db.Event(ctx, ev.ID)
		stored := err == nil
		ds, derr := db.Deliveries(ctx, ev.ID)
		if derr != nil {
			t.Fatal(derr)
		}
		switch {
		case errs[i] == nil && !stored:
			t.Errorf("ingest %d reported success but its event is not stored", i)
		case errs[i] == nil && len(ds) != 2:
			t.Errorf("ingest %d reported success but %d deliveries are stored, want 2", i, len(ds))
		case errs[i] != nil && stored:
			t.Errorf("ingest %d reported %v but its event %s (%s) is stored", i, errs[i], ev.ID, got.Path)
		case errs[i] != nil && len(ds) != 0:
			t.Errorf("ingest %d failed but %d of its deliveries are stored", i, len(ds))
		case errs[i] != nil:
			t.Errorf("valid ingest %d failed with a duplicate in its batch: %v", i, errs[i])
		}
		if errs[i] == nil {
			ok++
		} else {
			failed++
		}
	}
	t.Logf("%d stored, %d failed, in %d transactions", ok, failed, db.commits.transactions.Load())
	if db.commits.transactions.Load() >= n {
		t.Errorf("%d transactions for %d concurrent ingests: no batching happened, so this test proved nothing", db.commits.transactions.Load(), n)
	}
	if c := countEvents(t, db); c != ok+1 {
		t.Errorf("events in the file = %d, want %d (the successes and the existing one)", c, ok+1)
	}
	got, err := db.Event(ctx, existing.ID)
	if err != nil || got.Path != existing.Path {
		t.Errorf("existing event changed by the failed batches: %+v, %v", got, err)
	}
	if db.isolatedBatches.Load() == 0 {
		t.Errorf("no batch was run again with a savepoint per write: the duplicates never shared a batch, so this test proved nothing")
	}
	if st, err := db.Stats(ctx); err != nil || st.Events != ok+1 || st.Deliveries[DeliveryPending] != 2*ok+1 {
		t.Errorf("event_stats = %+v, %v; want %d events, %d pending: a batch run again counted its rows twice or kept a failed write's",
			st, err, ok+1, 2*ok+1)
	}

	// Leadership was handed on correctly: ingest still works.
	ingestOne(t, db, "after", "t")
}

// A batch whose writes all succeed runs once, without a savepoint per write
// (what made ingest pay a statement journal per event).
func TestBatchWithoutFailureRunsOnce(t *testing.T) {
	_, _, db := openOne(t)
	const n = 64
	start := make(chan struct{})
	errs := make(chan error, n)
	for i := range n {
		go func() {
			<-start
			_, err := db.Ingest(&Event{Method: "POST", Path: fmt.Sprintf("/p/%d", i), Body: []byte("{}")}, targetsOf([]string{"h"}, []string{"k"}))
			errs <- err
		}()
	}
	close(start)
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if tx := db.commits.transactions.Load(); tx >= n {
		t.Fatalf("%d transactions for %d concurrent ingests: no batching happened, so this test proved nothing", tx, n)
	}
	if got := db.isolatedBatches.Load(); got != 0 {
		t.Errorf("%d batches were run again with a savepoint per write, want 0: none of their writes failed", got)
	}
	if c := countEvents(t, db); c != n {
		t.Errorf("events in the file = %d, want %d", c, n)
	}
}

func TestIngestStoresNilAndEmptyBodies(t *testing.T) {
	ctx := context.Background()
	_, _, db := openOne(t)
	cases := []struct {
		name string
		body []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"one byte", []byte{0}},
		{"text", []byte("hello")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := &Event{Method: "POST", Path: "/b", Body: tc.body}
			if _, err := db.Ingest(ev, pendingTo("t")); err != nil {
				t.Fatalf("Ingest: %v", err)
			}
			got, err := db.Event(ctx, ev.ID)
			if err != nil {
				t.Fatalf("Event: %v", err)
			}
			if !bytes.Equal(got.Body, tc.body) {
				t.Errorf("body = %q, want %q", got.Body, tc.body)
			}
			var (
				typ  string
				size int
			)
			if err := db.file.reader.QueryRowContext(ctx, "SELECT typeof(body), body_size FROM events WHERE id = ?", ev.ID).
				Scan(&typ, &size); err != nil {
				t.Fatal(err)
			}
			if typ != "blob" {
				t.Errorf("typeof(body) = %s, want blob", typ)
			}
			if size != len(tc.body) {
				t.Errorf("body_size = %d, want %d", size, len(tc.body))
			}
		})
	}
}

func TestIngestAssignsIDAndTimeOnlyWhenMissing(t *testing.T) {
	ctx := context.Background()
	_, _, db := openOne(t)

	given := &Event{ID: uuid.NewString(), Method: "POST", Path: "/given",
		ReceivedAt: time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)}
	want := *given
	if _, err := db.Ingest(given, nil); err != nil {
		t.Fatal(err)
	}
	if given.ID != want.ID || !given.ReceivedAt.Equal(want.ReceivedAt) {
		t.Errorf("Ingest changed the given id or time: %s %v", given.ID, given.ReceivedAt)
	}
	got, err := db.Event(ctx, want.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.ReceivedAt.Equal(want.ReceivedAt) {
		t.Errorf("received at %v, want %v", got.ReceivedAt, want.ReceivedAt)
	}

	before := time.Now()
	fresh := &Event{Method: "POST", Path: "/fresh"}
	deliveries, err := db.Ingest(fresh, pendingTo("x"))
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	if ValidateID(fresh.ID) != nil {
		t.Errorf("assigned id %q is not a canonical UUID", fresh.ID)
	}
	if u := uuid.MustParse(fresh.ID); u.Version() != 7 {
		t.Errorf("assigned id is a version %d UUID, want 7", u.Version())
	}
	if fresh.ReceivedAt.Before(before) || fresh.ReceivedAt.After(after) {
		t.Errorf("assigned time %v not within [%v, %v]", fresh.ReceivedAt, before, after)
	}
	if len(deliveries) != 1 || deliveries[0].EventID != fresh.ID || deliveries[0].Status != DeliveryPending {
		t.Errorf("deliveries = %+v", deliveries)
	}

	// An event without targets is stored without deliveries.
	ds, err := db.Deliveries(ctx, given.ID)
	if err != nil || len(ds) != 0 {
		t.Errorf("deliveries of an event without targets = %v, %v", ds, err)
	}
}

// Concurrent big bodies are split over several transactions (maxBatchBytes)
// and still all stored.
func TestConcurrentLargeBodiesAreSplitAcrossTransactions(t *testing.T) {
	ctx := context.Background()
	_, _, db := openOne(t)
	const n = 8
	size := 3 << 20 // three of them reach maxBatchBytes
	var wg sync.WaitGroup
	errs := make([]error, n)
	evs := make([]*Event, n)
	for i := range evs {
		evs[i] = &Event{Method: "POST", Path: "/big", Body: bytes.Repeat([]byte{byte('a' + i)}, size)}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, errs[i] = db.Ingest(evs[i], pendingTo("t"))
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("ingest %d: %v", i, err)
		}
	}
	for i, ev := range evs {
		got, err := db.Event(ctx, ev.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Body, ev.Body) {
			t.Errorf("body %d differs after storage", i)
		}
	}
	if min := int64((n + 2) / 3); db.commits.transactions.Load() < min {
		t.Errorf("Transactions = %d, want at least %d: a batch exceeded maxBatchBytes", db.commits.transactions.Load(), min)
	}
}

func TestTakeBatchBounds(t *testing.T) {
	req := func(size int) *commitRequest {
		return &commitRequest{size: size}
	}
	queue := func(n, size int) []*commitRequest {
		q := make([]*commitRequest, n)
		for i := range q {
			q[i] = req(size)
		}
		return q
	}
	cases := []struct {
		name      string
		queue     []*commitRequest
		wantBatch int
	}{
		{"one", queue(1, 10), 1},
		{"a few", queue(5, 10), 5},
		{"exactly the event bound", queue(maxBatchWrites, 1), maxBatchWrites},
		{"over the event bound", queue(maxBatchWrites+88, 1), maxBatchWrites},
		{"empty bodies", queue(maxBatchWrites+1, 0), maxBatchWrites},
		{"byte bound: the request that reaches it is the last", queue(5, 3<<20), 3},
		{"one request over the byte bound alone", queue(3, maxBatchBytes+1), 1},
		{"just under the byte bound", []*commitRequest{req(maxBatchBytes - 1), req(0), req(1), req(5)}, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.queue
			orig := append([]*commitRequest(nil), q...)
			batch := takeBatch(&q)
			if len(batch) != tc.wantBatch {
				t.Fatalf("batch of %d, want %d", len(batch), tc.wantBatch)
			}
			if len(batch)+len(q) != len(orig) {
				t.Fatalf("batch %d + rest %d != %d queued", len(batch), len(q), len(orig))
			}
			for i := range batch {
				if batch[i] != orig[i] {
					t.Fatalf("batch[%d] is not queue[%d]: order lost", i, i)
				}
			}
			for i := range q {
				if q[i] != orig[len(batch)+i] {
					t.Fatalf("rest[%d] is not queue[%d]", i, len(batch)+i)
				}
			}
		})
	}
}

// pendingTo is targets that get a pending delivery (http targets) with ids.
func pendingTo(ids ...string) []Target {
	out := make([]Target, len(ids))
	for i, id := range ids {
		out[i] = Target{ID: id, Type: TargetHTTP}
	}
	return out
}

// targetsOf is http targets with ids pending, then database targets with
// ids kept.
func targetsOf(pending, kept []string) []Target {
	out := pendingTo(pending...)
	for _, id := range kept {
		out = append(out, Target{ID: id, Type: TargetDatabase})
	}
	return out
}
