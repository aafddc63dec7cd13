package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
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

// TestSIGKILLLosesNoAcknowledgedEvent builds the real binary, ingests under
// load, kills Caddy with SIGKILL at a random moment, restarts it on the same
// data directory, and checks that every event that got a 200 is stored and
// reaches the target at least once.
func TestSIGKILLLosesNoAcknowledgedEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the caddy binary")
	}
	dir := t.TempDir()
	bin := buildCaddy(t)

	target := newSeqTarget(t, 5*time.Millisecond)

	g := newBinaryGateway(t, bin, dir, fmt.Sprintf(`		# Fewer workers than ingest needs: deliveries are owed at the kill.
		workers 2
		webhook crash {
			entrypoint crash-key
			target sink http %s {
				max_retries 50
				backoff 20ms 200ms
			}
			target archive database
		}
`, target.url))
	dataDir, entrypoint := g.dataDir, g.hooks+"crash-key"

	start := func() *exec.Cmd {
		cmd, logs := g.start(t)
		waitUntil(t, 30*time.Second, func() bool {
			resp, err := http.Post(entrypoint, "application/json", strings.NewReader(`{"n":-1}`))
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}, func() string { return "caddy did not start:\n" + logs.String() })
		return cmd
	}

	first := start()
	var (
		acked  sync.Map // sequence number -> event id
		nAcked atomic.Int64
		next   atomic.Int64
		stop   = make(chan struct{})
		wg     sync.WaitGroup
	)
	missing := func() []int { return target.missing(&acked) }
	client := &http.Client{Timeout: 5 * time.Second}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := int(next.Add(1))
				resp, err := client.Post(entrypoint, "application/json", strings.NewReader(fmt.Sprintf(`{"n":%d}`, n)))
				if err != nil {
					continue // the process is gone: not acknowledged
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					continue
				}
				var ack struct {
					EventID string `json:"event_id"`
				}
				if err := json.Unmarshal(body, &ack); err != nil || ack.EventID == "" {
					t.Errorf("200 without an event id: %q", body)
					continue
				}
				acked.Store(n, ack.EventID)
				nAcked.Add(1)
			}
		}()
	}
	time.Sleep(time.Duration(500+rand.IntN(1500)) * time.Millisecond)
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	close(stop)
	wg.Wait()
	ackedBeforeKill := nAcked.Load()
	if ackedBeforeKill == 0 {
		t.Fatal("no event was acknowledged before the kill")
	}
	owedAtKill := len(missing())

	second := start()
	defer func() {
		_ = second.Process.Signal(syscall.SIGKILL)
		_ = second.Wait()
	}()
	waitUntil(t, 60*time.Second, func() bool { return len(missing()) == 0 },
		func() string { return fmt.Sprintf("acknowledged events never delivered: %v", missing()) })

	// Every acknowledged event is in the event DB.
	path := filepath.Join(dataDir, "events-"+storage.DeclaredWebhookID("crash")+".db")
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stored := 0
	acked.Range(func(_, id any) bool {
		var n int
		if err := db.QueryRowContext(context.Background(), "SELECT count(*) FROM events WHERE id = ?", id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("acknowledged event %s is not stored", id)
		}
		stored += n
		return true
	})
	delivered := target.distinct()
	t.Logf("acknowledged before SIGKILL: %d, of which not yet delivered at the kill: %d; after the restart: %d stored, all %d delivered (%d distinct events reached the target, counting unacknowledged ones)",
		ackedBeforeKill, owedAtKill, stored, ackedBeforeKill, delivered)
	if owedAtKill == 0 {
		t.Error("every acknowledged event was delivered before the kill: recovery was not exercised")
	}
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// buildCaddy builds this command once per test run.
func buildCaddy(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "webhooker-caddy-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "caddy")
		if out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// TestSecondProcessOnADataDirRefusesToStart runs two Caddy processes on one
// data_dir: the second must refuse, or both would deliver every event, and
// it must refuse before it writes anything there: it once rewrote
// webhooker.db with its own Caddyfile's webhooks before the lock stopped it,
// and the first process's declared entrypoints answered 404 from its next
// admin write on.
func TestSecondProcessOnADataDirRefusesToStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the caddy binary")
	}
	bin, dir := buildCaddy(t), t.TempDir()
	data := filepath.Join(dir, "data")
	config := func(admin, site int, webhook string) string {
		path := filepath.Join(dir, fmt.Sprintf("Caddyfile-%d", admin))
		cfg := fmt.Sprintf("{\n\tadmin localhost:%d\n\twebhooker {\n\t\tdata_dir %s\n"+
			"\t\twebhook %s {\n\t\t\tentrypoint %s-key\n\t\t\ttarget keep database\n\t\t}\n\t}\n}\n"+
			"http://:%d {\n\twebhooker\n}\n", admin, data, webhook, webhook, site)
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	env := append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	firstAdmin, firstSite := freePort(t), freePort(t)
	first := exec.Command(bin, "run", "--config", config(firstAdmin, firstSite, "first"))
	first.Env = env
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = first.Process.Kill(); _ = first.Wait() }()
	waitUntil(t, 30*time.Second, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://localhost:%d/config/", firstAdmin))
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	}, func() string { return "the first caddy did not start" })
	ingest := func(key string) int {
		resp, err := http.Post(fmt.Sprintf("http://localhost:%d/hooks/%s", firstSite, key), "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := ingest("first-key"); code != http.StatusOK {
		t.Fatalf("ingest into the first caddy: %d", code)
	}
	// The first caddy is done writing once its event is in the event DB
	// and gone from the intake (a sync round after the apply).
	waitUntil(t, 30*time.Second, func() bool {
		return countRows(t, filepath.Join(data, "intake.db"), "intake") == 0 &&
			countRows(t, filepath.Join(data, "events-"+storage.DeclaredWebhookID("first")+".db"), "events") == 1
	}, func() string { return "the first caddy never applied its event and emptied its intake" })
	before := dataDirState(t, data)

	secondConfig := config(freePort(t), freePort(t), "second")
	validate := exec.Command(bin, "validate", "--config", secondConfig)
	validate.Env = env
	if out, err := validate.CombinedOutput(); err != nil {
		t.Fatalf("caddy validate beside a running caddy: %v\n%s", err, out)
	}
	second := exec.Command(bin, "run", "--config", secondConfig)
	second.Env = env
	done := make(chan []byte, 1)
	go func() { out, _ := second.CombinedOutput(); done <- out }()
	select {
	case out := <-done:
		if !strings.Contains(string(out), "is in use by another process") {
			t.Errorf("the second caddy exited without the expected message:\n%s", out)
		}
	case <-time.After(30 * time.Second):
		_ = second.Process.Kill()
		t.Fatal("a second caddy runs on the same data_dir")
	}
	if after := dataDirState(t, data); !maps.Equal(before, after) {
		t.Errorf("caddy validate and the refused second caddy changed the data_dir:\nbefore %v\nafter  %v", before, after)
	}

	// Any admin write makes the first process reload its configuration
	// from webhooker.db: its declared key must still be routed.
	resp, err := http.Post(fmt.Sprintf("http://localhost:%d/webhooker/webhooks", firstAdmin), "application/json",
		strings.NewReader(`{"name":"after-the-second"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("admin write on the first caddy: %d", resp.StatusCode)
	}
	for key, want := range map[string]int{"first-key": http.StatusOK, "second-key": http.StatusNotFound} {
		if code := ingest(key); code != want {
			t.Errorf("POST /hooks/%s on the first caddy: %d, want %d", key, code, want)
		}
	}
}

// dataDirState is the name, mode and sha256 of every file in dir, except
// the lock file's pid and SQLite's shared-memory index, which readers
// write too.
func dataDirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string)
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sum := ""
		if !strings.HasSuffix(e.Name(), "-shm") {
			sum = fmt.Sprintf("%x", sha256.Sum256(b))
		}
		out[e.Name()] = fmt.Sprintf("%v %s", info.Mode(), sum)
	}
	return out
}

// freePort is a port free on 127.0.0.1 now, for a process the test starts
// to listen on. It is taken below Linux's ephemeral range (32768 up), from
// which the system picks both ":0" listeners and the source port of every
// outgoing connection: a port from that range, free when chosen, was at
// times the source of a connection by the time the process bound it (the
// cluster tests make many). Ports are handed out in turn from a random
// start, so that one test process does not hand out one twice.
func freePort(t *testing.T) int {
	t.Helper()
	for range portSpan {
		p := portBase + int(nextPort.Add(1))%portSpan
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue // in use
		}
		l.Close()
		return p
	}
	t.Fatalf("no free port in %d-%d", portBase, portBase+portSpan-1)
	return 0
}

const (
	portBase = 20000
	portSpan = 12000 // up to 31999
)

var nextPort = func() *atomic.Int64 {
	var n atomic.Int64
	n.Store(rand.Int64N(portSpan))
	return &n
}()

func waitUntil(t *testing.T, timeout time.Duration, cond func() bool, why func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(why())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// countRows counts the rows of table in the SQLite file at path, read-only
// (-1 while the file or table is not there yet).
func countRows(t *testing.T, path, table string) int {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
		return -1
	}
	return n
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		_ = os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

// TestValidateTouchesNoFile: `caddy validate` provisions the config without
// starting it, and provisioning opens no storage: a data_dir that does not
// exist is not created.
func TestValidateTouchesNoFile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the caddy binary")
	}
	bin, dir := buildCaddy(t), t.TempDir()
	data := filepath.Join(dir, "fresh", "data")
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("{\n\tadmin off\n\twebhooker {\n\t\tdata_dir %s\n"+
		"\t\twebhook w {\n\t\t\tentrypoint k\n\t\t\ttarget keep database\n\t\t}\n\t}\n}\n"+
		"http://:%d {\n\twebhooker\n}\n", data, freePort(t))), 0o600); err != nil {
		t.Fatal(err)
	}
	validate := exec.Command(bin, "validate", "--config", cfg)
	validate.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	if out, err := validate.CombinedOutput(); err != nil {
		t.Fatalf("caddy validate: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "fresh")); !os.IsNotExist(err) {
		t.Errorf("caddy validate created %s (stat: %v)", filepath.Join(dir, "fresh"), err)
	}
}
