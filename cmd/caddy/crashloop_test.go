package main

import (
	"bytes"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/ncruces/go-sqlite3/driver"

	"github.com/webhooker/caddy-webhooker/storage"
)

// TestTargetThatKillsCaddyEndsAfterMaxRetries replays the crash loop of issue
// 9: a target (there, Caddy's admin /stop) kills the gateway whenever a
// delivery reaches it. The attempt used to go unrecorded, so recovery resent
// it at every start, for ever. Now recovery counts the attempt the process
// died during: with max_retries 2, the third death ends the delivery failed,
// and the fourth start stays up and delivers other events.
func TestTargetThatKillsCaddyEndsAfterMaxRetries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the caddy binary")
	}
	dir := t.TempDir()
	bin := buildCaddy(t)

	var (
		running atomic.Pointer[os.Process]
		kills   atomic.Int64
	)
	killer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read to the end, so that the server notices the connection
		// close and cancels r's context.
		_, _ = io.Copy(io.Discard, r.Body)
		kills.Add(1)
		if p := running.Load(); p != nil {
			_ = p.Signal(syscall.SIGKILL)
		}
		// No answer: the gateway must not read one before it dies.
		<-r.Context().Done()
	}))
	defer killer.Close()
	var (
		mu     sync.Mutex
		bodies []string
	)
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(body))
		mu.Unlock()
	}))
	defer healthy.Close()
	received := func(body string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range bodies {
			if b == body {
				return true
			}
		}
		return false
	}

	g := newBinaryGateway(t, bin, dir, fmt.Sprintf(`		webhook deadly {
			entrypoint deadly-key
			target killer http %s {
				max_retries 2
				backoff 20ms 50ms
			}
		}
		webhook fine {
			entrypoint fine-key
			target sink http %s
		}
`, killer.URL, healthy.URL))
	dataDir := g.dataDir
	entrypoint := func(key string) string { return g.hooks + key }
	post := func(key, body string) (int, error) {
		resp, err := http.Post(entrypoint(key), "application/json", strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}

	type process struct {
		cmd    *exec.Cmd
		exited chan struct{}
		logs   *bytes.Buffer
	}
	start := func() process {
		cmd, logs := g.start(t)
		running.Store(cmd.Process)
		p := process{cmd: cmd, exited: make(chan struct{}), logs: logs}
		go func() { _ = cmd.Wait(); close(p.exited) }()
		return p
	}
	died := func(p process) func() bool {
		return func() bool {
			select {
			case <-p.exited:
				return true
			default:
				return false
			}
		}
	}

	// First start: up, then one event to the deadly target kills it.
	first := start()
	waitUntil(t, 30*time.Second, func() bool { code, err := post("fine-key", `{"ready":1}`); return err == nil && code == 200 },
		func() string { return "caddy did not start:\n" + first.logs.String() })
	// The 200 may or may not arrive before the kill: the event is stored
	// before either.
	_, _ = post("deadly-key", `{"deadly":true}`)
	waitUntil(t, 30*time.Second, died(first), func() string { return "the target did not kill caddy" })

	// Each start resumes the delivery, and the target kills caddy again,
	// until recovery has counted max_retries+1 attempts.
	for death := 2; death <= 3; death++ {
		p := start()
		waitUntil(t, 30*time.Second, died(p), func() string {
			return fmt.Sprintf("start %d did not resume the delivery (killed %d times):\n%s", death, kills.Load(), p.logs.String())
		})
	}
	if n := kills.Load(); n != 3 {
		t.Fatalf("the target was reached %d times in 3 starts, want 3", n)
	}

	last := start()
	defer func() {
		_ = last.cmd.Process.Signal(syscall.SIGKILL)
		<-last.exited
	}()
	path := filepath.Join(dataDir, "events-"+storage.DeclaredWebhookID("deadly")+".db")
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var (
		status, lastError string
		attempts          int
	)
	waitUntil(t, 30*time.Second, func() bool {
		err := db.QueryRow("SELECT status, attempts, last_error FROM deliveries").Scan(&status, &attempts, &lastError)
		return err == nil && status == string(storage.DeliveryFailed)
	}, func() string {
		return fmt.Sprintf("the delivery is %s after %d attempts (%s), want failed:\n%s", status, attempts, lastError, last.logs.String())
	})
	if attempts != 3 || !strings.HasPrefix(lastError, "gave up after 3 attempts: interrupted") {
		t.Errorf("failed delivery: %d attempts, last error %q", attempts, lastError)
	}
	rows, err := db.Query("SELECT attempt, error FROM delivery_results ORDER BY attempt")
	if err != nil {
		t.Fatal(err)
	}
	var results []string
	for rows.Next() {
		var (
			n   int
			msg string
		)
		if err := rows.Scan(&n, &msg); err != nil {
			t.Fatal(err)
		}
		results = append(results, fmt.Sprintf("%d: %s", n, msg))
		if !strings.HasPrefix(msg, "interrupted: ") {
			t.Errorf("attempt %d recorded as %q, want interrupted", n, msg)
		}
	}
	rows.Close()
	if len(results) != 3 {
		t.Errorf("results = %q, want 3 interrupted attempts", results)
	}

	// The fourth start stays up: a later event to a healthy target goes
	// through this very process.
	code, err := post("fine-key", `{"after":"the crash loop"}`)
	if err != nil || code != http.StatusOK {
		t.Fatalf("ingest after the crash loop: %d, %v\n%s", code, err, last.logs.String())
	}
	waitUntil(t, 30*time.Second, func() bool { return received(`{"after":"the crash loop"}`) },
		func() string { return "the healthy target never got the later event:\n" + last.logs.String() })
	if died(last)() {
		t.Fatalf("the fourth start died:\n%s", last.logs.String())
	}
	if n := kills.Load(); n != 3 {
		t.Errorf("the target was reached %d times, want 3", n)
	}
	t.Logf("results of the deadly delivery: %q", results)
}
