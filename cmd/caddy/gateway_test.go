package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// binaryGateway is the built caddy binary set up to run on a Caddyfile of
// its own in dir: a webhooker block over dir/data, served under /hooks/ on
// a free port.
type binaryGateway struct {
	bin, dir, caddyfile string
	dataDir             string
	hooks               string // http://127.0.0.1:<port>/hooks/
	admin               string // http://localhost:<port>
}

// newBinaryGateway writes the Caddyfile: an admin endpoint and a site on
// free ports, and the webhooker block with data_dir, then webhooker (its
// other lines, indented by two tabs).
func newBinaryGateway(t *testing.T, bin, dir, webhooker string) *binaryGateway {
	t.Helper()
	adminPort, sitePort := freePort(t), freePort(t)
	g := &binaryGateway{bin: bin, dir: dir, caddyfile: filepath.Join(dir, "Caddyfile"), dataDir: filepath.Join(dir, "data"),
		hooks: fmt.Sprintf("http://127.0.0.1:%d/hooks/", sitePort), admin: fmt.Sprintf("http://localhost:%d", adminPort)}
	config := fmt.Sprintf("{\n\tadmin localhost:%d\n\twebhooker {\n\t\tdata_dir %s\n%s\t}\n}\n\nhttp://:%d {\n\twebhooker /hooks/*\n\twebhooker_api\n}\n",
		adminPort, g.dataDir, webhooker, sitePort)
	if err := os.WriteFile(g.caddyfile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return g
}

// start runs the binary on the Caddyfile, with a home of its own in dir,
// its output in logs. The caller waits for it to be ready.
func (g *binaryGateway) start(t *testing.T) (cmd *exec.Cmd, logs *bytes.Buffer) {
	t.Helper()
	cmd = exec.Command(g.bin, "run", "--config", g.caddyfile)
	cmd.Env = append(os.Environ(), "HOME="+g.dir, "XDG_DATA_HOME="+g.dir, "XDG_CONFIG_HOME="+g.dir)
	logs = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, logs
}

// seqTarget is a receiver that counts the deliveries of each body
// {"n": N}, answering 200 after delay: a slow target, so that deliveries
// are still owed when a kill comes.
type seqTarget struct {
	url string
	// refuse, while set, answers 503 and counts nothing: a target down.
	refuse   atomic.Bool
	mu       sync.Mutex
	received map[int]int // sequence number -> deliveries seen
}

func newSeqTarget(t *testing.T, delay time.Duration) *seqTarget {
	t.Helper()
	s := &seqTarget{received: map[int]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.refuse.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		var body struct{ N int }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.received[body.N]++
		s.mu.Unlock()
		time.Sleep(delay)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// count is how many times n was delivered.
func (s *seqTarget) count(n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.received[n]
}

// distinct is how many sequence numbers were delivered at least once.
func (s *seqTarget) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.received)
}

// missing lists the sequence numbers (the keys of acked) never delivered.
func (s *seqTarget) missing(acked *sync.Map) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	acked.Range(func(k, _ any) bool {
		if s.received[k.(int)] == 0 {
			out = append(out, k.(int))
		}
		return true
	})
	return out
}
