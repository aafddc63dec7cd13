package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestOrderedLineSurvivesSIGKILL: an ordered target's line is in its event
// DB, not in the process. Caddy is killed (SIGKILL) while the target fails
// the head of a line of 50 events; nothing behind the head went out before.
// Restarted with the target well, it sends the head first, then the rest,
// each once, in ingest order.
func TestOrderedLineSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the caddy binary")
	}
	const events = 50
	var (
		mu       sync.Mutex
		arrivals []int
		down     atomic.Bool
	)
	down.Store(true)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		i, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(string(body), `{"i":`), "}"))
		if err != nil {
			t.Errorf("target: body %q", body)
		}
		mu.Lock()
		arrivals = append(arrivals, i)
		mu.Unlock()
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
		}
	}))
	defer target.Close()
	got := func() []int {
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), arrivals...)
	}

	g := newBinaryGateway(t, buildCaddy(t), t.TempDir(), fmt.Sprintf(`		webhook line {
			entrypoint line-in
			target in-order http %s {
				ordered
				max_retries 100
				backoff 50ms 100ms
				breaker 0
			}
		}
		webhook probe {
			entrypoint probe-in
			target kept database
		}
`, target.URL))
	send := func(key, body string) int {
		resp, err := http.Post(g.hooks+key, "application/json", strings.NewReader(body))
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	start := func() *exec.Cmd {
		cmd, logs := g.start(t)
		waitUntil(t, 30*time.Second, func() bool { return send("probe-in", "{}") == http.StatusOK },
			func() string { return "caddy did not start:\n" + logs.String() })
		return cmd
	}

	first := start()
	for i := range events {
		if status := send("line-in", fmt.Sprintf(`{"i":%d}`, i)); status != http.StatusOK {
			t.Fatalf("event %d answered %d", i, status)
		}
	}
	waitUntil(t, 30*time.Second, func() bool { return len(got()) >= 3 },
		func() string { return fmt.Sprintf("the head attempted %d times", len(got())) })
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	before := got()
	for _, i := range before {
		if i != 0 {
			t.Fatalf("event %d went out while the head was failing: %v", i, before)
		}
	}

	down.Store(false)
	second := start()
	defer func() {
		_ = second.Process.Signal(syscall.SIGKILL)
		_ = second.Wait()
	}()
	waitUntil(t, 60*time.Second, func() bool { return len(got()) >= len(before)+events },
		func() string { return fmt.Sprintf("after the restart the target got %v", got()[len(before):]) })
	after := got()[len(before):]
	want := make([]int, events)
	for i := range want {
		want[i] = i
	}
	if fmt.Sprint(after) != fmt.Sprint(want) {
		t.Errorf("after the restart the target got %v, want %v", after, want)
	}
	t.Logf("before SIGKILL: the head %d times, nothing else; after the restart: %d events, in ingest order", len(before), len(after))
}
