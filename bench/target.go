package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/ncruces/go-sqlite3/driver"

	"github.com/webhooker/caddy-webhooker/storage"
)

// receiver is an http target served by this process on loopback. It keys
// what it receives by the Webhooker-Event-Id header, and records when each
// event was first accepted (answered 2xx).
type receiver struct {
	URL string
	srv *http.Server

	// down makes it answer 503 to everything (a target that is down).
	down atomic.Bool
	// failFirst makes it answer 500 to the first failFirst attempts of
	// each event.
	failFirst int
	// delay is spent in each request before answering.
	delay time.Duration
	// keepAttempts keeps the time of every attempt of every event.
	keepAttempts bool

	mu       sync.Mutex
	first    map[string]time.Time   // event id -> first accepted delivery
	tries    map[string]int         // event id -> attempts seen
	attempts map[string][]time.Time // event id -> every attempt (keepAttempts)
	accepted int                    // 2xx answers
	rejected int                    // non-2xx answers
	dups     int                    // accepted deliveries of an event accepted before
	noID     int                    // requests without Webhooker-Event-Id
	bytes    int64
}

func newReceiver(configure func(*receiver)) (*receiver, error) {
	rc := &receiver{
		first: make(map[string]time.Time), tries: make(map[string]int),
		attempts: make(map[string][]time.Time),
	}
	if configure != nil {
		configure(rc)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rc.URL = fmt.Sprintf("http://%s/hook", ln.Addr())
	rc.srv = &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = rc.srv.Serve(ln) }()
	return rc, nil
}

func (rc *receiver) close() { _ = rc.srv.Close() }

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	n, _ := io.Copy(io.Discard, r.Body)
	if rc.delay > 0 {
		time.Sleep(rc.delay)
	}
	id := r.Header.Get("Webhooker-Event-Id")
	rc.mu.Lock()
	rc.bytes += n
	if id == "" {
		rc.noID++
		rc.mu.Unlock()
		http.Error(w, "no Webhooker-Event-Id", http.StatusBadRequest)
		return
	}
	rc.tries[id]++
	if rc.keepAttempts {
		rc.attempts[id] = append(rc.attempts[id], now)
	}
	status := http.StatusOK
	switch {
	case rc.down.Load():
		status = http.StatusServiceUnavailable
	case rc.tries[id] <= rc.failFirst:
		status = http.StatusInternalServerError
	}
	if status == http.StatusOK {
		rc.accepted++
		if _, seen := rc.first[id]; seen {
			rc.dups++
		} else {
			rc.first[id] = now
		}
	} else {
		rc.rejected++
	}
	rc.mu.Unlock()
	w.WriteHeader(status)
}

// delivered is how many distinct events were accepted.
func (rc *receiver) delivered() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.first)
}

// receivedAt is when event id was first accepted.
func (rc *receiver) receivedAt(id string) (time.Time, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	t, ok := rc.first[id]
	return t, ok
}

// missing lists the ids not accepted yet.
func (rc *receiver) missing(ids []string) []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for _, id := range ids {
		if _, ok := rc.first[id]; !ok {
			out = append(out, id)
		}
	}
	return out
}

// waitDelivered waits until every id is accepted, or timeout; it returns
// those still missing.
func (rc *receiver) waitDelivered(ids []string, timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	for {
		miss := rc.missing(ids)
		if len(miss) == 0 || time.Now().After(deadline) {
			return miss
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type receiverCounts struct {
	accepted, rejected, dups, noID int
	bytes                          int64
}

func (rc *receiver) counts() receiverCounts {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return receiverCounts{rc.accepted, rc.rejected, rc.dups, rc.noID, rc.bytes}
}

// attemptTimes is a copy of the attempt times of event id.
func (rc *receiver) attemptTimes(id string) []time.Time {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]time.Time(nil), rc.attempts[id]...)
}

// storedEvents reads the ids of the events stored in a declared webhook's
// event DB (read-only; Caddy may be running: WAL lets us read meanwhile).
func storedEvents(dataDir, webhookName string) (map[string]bool, error) {
	db, err := openEventDB(dataDir, webhookName)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(context.Background(), "SELECT id FROM events")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ids := make(map[string]bool)
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids[id] = true
	}
	return ids, rows.Err()
}

// deliveryStates counts a declared webhook's deliveries by status.
func deliveryStates(dataDir, webhookName string) (map[string]int, error) {
	db, err := openEventDB(dataDir, webhookName)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(context.Background(), "SELECT status, count(*) FROM deliveries GROUP BY status")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]int)
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			return nil, err
		}
		out[status] = n
	}
	return out, rows.Err()
}

func openEventDB(dataDir, webhookName string) (*sql.DB, error) {
	path := filepath.Join(dataDir, "events-"+storage.DeclaredWebhookID(webhookName)+".db")
	return sql.Open("sqlite3", "file:"+path+"?mode=ro")
}
