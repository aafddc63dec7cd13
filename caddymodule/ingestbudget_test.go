package caddymodule_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/caddymodule"
)

// rawPost is a POST to the test site written by hand on its own
// connection, so that the test decides when each byte of the body is sent.
type rawPost struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

// startRawPost sends the request head of a POST to path declaring
// contentLength, and no body yet.
func startRawPost(t *testing.T, path string, contentLength int) *rawPost {
	t.Helper()
	conn, err := net.DialTimeout("tcp4", "127.0.0.1:9080", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: localhost:9080\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
		path, contentLength); err != nil {
		t.Fatal(err)
	}
	return &rawPost{t: t, conn: conn, br: bufio.NewReader(conn)}
}

func (p *rawPost) send(b []byte) {
	p.t.Helper()
	if _, err := p.conn.Write(b); err != nil {
		p.t.Fatalf("sending %d body bytes: %v", len(b), err)
	}
}

// answer reads the response, waiting at most 20s.
func (p *rawPost) answer() (*http.Response, []byte) {
	p.t.Helper()
	if err := p.conn.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		p.t.Fatal(err)
	}
	resp, err := http.ReadResponse(p.br, nil)
	if err != nil {
		p.t.Fatalf("reading the answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		p.t.Fatalf("reading the answer's body: %v", err)
	}
	return resp, body
}

// waitUntil polls cond until it holds, failing the test after 20s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// storedEvents counts the events of a declared webhook; a webhook whose
// event DB was never created has none.
func (g *gatewayTest) storedEvents(webhook string) int {
	g.t.Helper()
	if _, err := os.Stat(g.eventDBPath(webhook)); errors.Is(err, os.ErrNotExist) {
		return 0
	}
	return countRows(g.t, g.eventDB(webhook), "events")
}

// TestIngestBodyTimeout replays finding 8's connection: it declares 10 MiB
// and trickles a byte every 100 ms. It holds one 32 KiB chunk of memory,
// not the 10 MiB declared, and gets 408 once body_timeout has passed; the
// connection is closed, the memory given back, and nothing stored.
func TestIngestBodyTimeout(t *testing.T) {
	g := startGateway(t, `
		body_timeout 1s
		webhook trickled {
			entrypoint trickled-in
			target archive database
		}
`)
	if n := caddymodule.IngestMemoryInUse(); n != 0 {
		t.Fatalf("%d bytes of ingest memory in use before the test", n)
	}
	p := startRawPost(t, "/hooks/trickled-in", 10<<20)
	start := time.Now()
	stop := make(chan struct{})
	sent := make(chan int)
	go func() {
		n := 0
		defer func() { sent <- n }()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := p.conn.Write([]byte("x")); err != nil {
					return // the server closed the connection
				}
				n++
			}
		}
	}()

	waitUntil(t, "the body read has begun", func() bool { return caddymodule.IngestMemoryInUse() > 0 })
	if n := caddymodule.IngestMemoryInUse(); n != 32<<10 {
		t.Errorf("a body declaring 10 MiB holds %d bytes while it trickles, want one chunk of 32 KiB", n)
	}

	resp, _ := p.answer()
	elapsed := time.Since(start)
	close(stop)
	t.Logf("408 after %v and %d bytes", elapsed, <-sent)
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("status %d, want 408", resp.StatusCode)
	}
	if elapsed < time.Second {
		t.Errorf("408 after %v, before body_timeout (1s)", elapsed)
	}
	if !resp.Close {
		t.Errorf("the 408 does not close the connection (headers %v)", resp.Header)
	}
	// The server has closed the connection: what follows is EOF (or a reset
	// for bytes it did not read), never a second answer.
	if _, err := p.br.ReadByte(); err == nil {
		t.Errorf("the connection is still open after the 408")
	}
	if n := caddymodule.IngestMemoryInUse(); n != 0 {
		t.Errorf("%d bytes of ingest memory still in use after the 408, want 0", n)
	}
	if n := g.storedEvents("trickled"); n != 0 {
		t.Errorf("%d events stored, want none", n)
	}
	// The entrypoint still takes a body sent in time.
	g.mustIngest("trickled-in", `{"n":1}`)
}

// TestIngestMemoryBudget holds max_ingest_memory with three bodies half sent,
// then checks that a fourth request gets 503 with Retry-After and closes its
// connection, that the three finish with 200 once their bodies are in, and
// that the budget is then free again for a normal POST.
func TestIngestMemoryBudget(t *testing.T) {
	const (
		bodySize = 64 << 10
		holders  = 3
	)
	g := startGateway(t, `
		max_body_size 64KiB
		max_ingest_memory 192KiB
		webhook held {
			entrypoint held-in
			target archive database
		}
`)
	if n := caddymodule.IngestMemoryInUse(); n != 0 {
		t.Fatalf("%d bytes of ingest memory in use before the test", n)
	}
	body := []byte(strings.Repeat("h", bodySize))
	var posts []*rawPost
	for range holders {
		p := startRawPost(t, "/hooks/held-in", bodySize)
		// Past the first 32 KiB chunk: the buffer grows to the whole body.
		p.send(body[:33<<10])
		posts = append(posts, p)
	}
	waitUntil(t, "the three bodies hold the whole budget", func() bool {
		return caddymodule.IngestMemoryInUse() == holders*bodySize
	})

	resp, err := g.client.Post(siteURL+"/hooks/held-in", "application/json", strings.NewReader(`{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a request beyond max_ingest_memory: status %d, want 503", resp.StatusCode)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "5" {
		t.Errorf("Retry-After %q, want 5 (seconds)", ra)
	}
	if !resp.Close {
		t.Errorf("the 503 does not close the connection (headers %v)", resp.Header)
	}
	if n := g.storedEvents("held"); n != 0 {
		t.Errorf("%d events stored while the bodies are still in flight, want none", n)
	}

	ids := make(map[string]bool)
	for i, p := range posts {
		p.send(body[33<<10:])
		resp, answer := p.answer()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("holder %d: status %d (%s), want 200", i, resp.StatusCode, answer)
		}
		var ack struct {
			EventID string `json:"event_id"`
		}
		if err := json.Unmarshal(answer, &ack); err != nil {
			t.Fatalf("holder %d: answer %q: %v", i, answer, err)
		}
		ids[ack.EventID] = true
	}
	// Each ingest gives its memory back before it answers.
	if n := caddymodule.IngestMemoryInUse(); n != 0 {
		t.Fatalf("%d bytes of ingest memory in use once every body is stored, want 0", n)
	}
	ids[g.mustIngest("held-in", `{"n":2}`)] = true

	stored := eventIDs(t, g.eventDB("held"))
	if len(stored) != holders+1 {
		t.Errorf("%d events stored, want %d (the three holders and the last POST; not the 503)", len(stored), holders+1)
	}
	for id := range ids {
		if !stored[id] {
			t.Errorf("acknowledged event %s is not stored", id)
		}
	}
	for id := range stored {
		if ev := queryEvent(t, g.eventDB("held"), id); ev.BodySize != bodySize && ev.BodySize != len(`{"n":2}`) {
			t.Errorf("event %s stored with %d body bytes", id, ev.BodySize)
		}
	}
}

// TestIngestMemoryOptionErrors checks that the two options refuse values
// that make no sense, saying why.
func TestIngestMemoryOptionErrors(t *testing.T) {
	g := startGateway(t, "")
	for _, c := range []struct{ name, lines, want string }{
		{"budget under max_body_size", "\t\tmax_body_size 1MiB\n\t\tmax_ingest_memory 512KiB",
			"max_ingest_memory (524288 bytes) must be at least max_body_size (1048576 bytes)"},
		{"default max_body_size over the budget", "\t\tmax_ingest_memory 1MiB",
			"max_ingest_memory (1048576 bytes) must be at least max_body_size (10485760 bytes)"},
		{"bad size", "\t\tmax_ingest_memory plenty", `max_ingest_memory "plenty": want a size`},
		{"zero size", "\t\tmax_ingest_memory 0", `max_ingest_memory "0": want a size`},
		{"no size", "\t\tmax_ingest_memory", "wrong argument count"},
		{"zero body_timeout", "\t\tbody_timeout 0s", "body_timeout: want a duration over 0"},
		{"negative body_timeout", "\t\tbody_timeout -1s", `body_timeout "-1s": want a duration`},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := loadConfig(t, caddyfile(g.dataDir, c.lines), "text/caddyfile")
			var answer struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &answer); err != nil {
				t.Fatalf("answer %q: %v", body, err)
			}
			if status != http.StatusBadRequest || !strings.Contains(answer.Error, c.want) {
				t.Errorf("status %d, %s\nwant 400 saying %q", status, answer.Error, c.want)
			}
		})
	}
	// max_body_size over the default budget raises the default with it.
	g.reload("\t\tmax_body_size 300MiB")
}
