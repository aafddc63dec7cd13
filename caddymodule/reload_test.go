package caddymodule_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/caddymodule"
)

// TestReloadUnderLoad reloads the config through the admin API 6 times while
// 8 clients POST continuously to one entrypoint, adding a webhook each time.
// Each new webhook must answer 200 as soon as its config load returns; no
// request may get an answer other than 200; and the file must hold exactly
// the acknowledged events.
//
// About connection errors: on Linux, Caddy binds each config's listener
// with SO_REUSEPORT and closes the old config's socket once the new one
// runs; connections the kernel had queued on the old socket are reset
// (ECONNRESET at connect, or EOF after the request was sent, before any
// server read it). Plain Caddy v2.11.9 with `respond` does the same under
// this load. Such a request never reaches the gateway, so the clients here
// retry it, as webhook providers do, and the test checks that it was never
// stored: no body appears twice and the file holds exactly the acknowledged
// events. What must be zero: answers other than 200, and requests that
// never got a 200.
func TestReloadUnderLoad(t *testing.T) {
	reloadUnderLoad(t, false)
}

// TestReloadUnderLoadKeepAlive is TestReloadUnderLoad with kept-alive
// connections, which adds one more way for a request to fail before it is
// read: the old server closes its idle connections (http.Server.Shutdown)
// while a client is sending on one.
func TestReloadUnderLoadKeepAlive(t *testing.T) {
	reloadUnderLoad(t, true)
}

// ackedEvent is one request answered with 200.
type ackedEvent struct{ id, body string }

func reloadUnderLoad(t *testing.T, keepAlive bool) {
	const (
		workers     = 8
		reloads     = 6
		maxAttempts = 10
	)
	// Keys and bodies unique to this test, so that nothing from another
	// test could be taken for its events.
	key := fmt.Sprintf("busy-%v-in", keepAlive)
	base := fmt.Sprintf(`
		webhook busy {
			entrypoint %s
			target archive database
			target audit log
		}
`, key)
	g := startGateway(t, base)

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait() // even when the test fails: no request of it outlives it
	}()
	var (
		acked         atomic.Int64
		transportErrs atomic.Int64 // attempts that failed before an answer; retried
		refused       atomic.Int64 // answers other than 200: must be 0
		lost          atomic.Int64 // requests with no 200 after maxAttempts: must be 0
		errMu         sync.Mutex
		errSample     []string
		events        = make([][]ackedEvent, workers) // per worker
	)
	noteErr := func(s string) {
		errMu.Lock()
		defer errMu.Unlock()
		if len(errSample) < 10 {
			errSample = append(errSample, s)
		}
	}
	client := newClient(keepAlive)
	send := func(body string) (int, []byte, error) {
		req, err := http.NewRequest(http.MethodPost, siteURL+"/hooks/"+key, strings.NewReader(body))
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		respBody, err := io.ReadAll(resp.Body)
		return resp.StatusCode, respBody, err
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				body := fmt.Sprintf(`{"test":%q,"worker":%d,"n":%d}`, t.Name(), w, n)
				answered := false
				for attempt := 1; attempt <= maxAttempts && !answered; attempt++ {
					status, respBody, err := send(body)
					switch {
					case err != nil:
						transportErrs.Add(1)
						noteErr(err.Error())
						time.Sleep(time.Duration(attempt) * 10 * time.Millisecond)
						continue
					case status != http.StatusOK:
						refused.Add(1)
						noteErr(fmt.Sprintf("status %d: %s", status, respBody))
					default:
						id, err := parseEventID(respBody)
						if err != nil {
							refused.Add(1)
							noteErr(err.Error())
							break
						}
						events[w] = append(events[w], ackedEvent{id: id, body: body})
						acked.Add(1)
					}
					answered = true
				}
				if !answered {
					lost.Add(1)
				}
			}
		}()
	}

	waitForAcks := func(min int64) {
		deadline := time.Now().Add(30 * time.Second)
		for acked.Load() < min && time.Now().Before(deadline) && refused.Load()+lost.Load() == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitForAcks(workers)

	added := make(map[string]string) // webhook name -> its event id
	lines := base
	for i := 1; i <= reloads; i++ {
		name := fmt.Sprintf("added-%d", i)
		lines += fmt.Sprintf("\t\twebhook %s {\n\t\t\tentrypoint %s-in\n\t\t\ttarget archive database\n\t\t}\n", name, name)
		before := acked.Load()
		start := time.Now()
		g.reload(lines)
		took := time.Since(start)
		// The new webhook is in force as soon as the load returns: the first
		// answer its entrypoint gives is 200 (see gatewayTest.do).
		added[name] = g.mustIngest(name+"-in", fmt.Sprintf(`{"reload":%d}`, i))
		t.Logf("reload %d took %v; %d events acknowledged meanwhile", i, took.Round(time.Millisecond), acked.Load()-before)
		// Let the load run on the new config before the next reload.
		waitForAcks(acked.Load() + workers)
	}
	stop()
	wg.Wait()

	t.Logf("%d events acknowledged under %d reloads; %d refused, %d never answered; %d attempts failed at the connection and were retried",
		acked.Load(), reloads, refused.Load(), lost.Load(), transportErrs.Load())
	if refused.Load() != 0 || lost.Load() != 0 {
		t.Errorf("%d requests were refused and %d never got an answer across reloads; first errors:\n%s",
			refused.Load(), lost.Load(), strings.Join(errSample, "\n"))
	} else if transportErrs.Load() != 0 {
		t.Logf("connection errors (retried):\n%s", strings.Join(errSample, "\n"))
	}

	// The file holds exactly the acknowledged events: none missing, and no
	// failed attempt stored (its body would appear twice).
	stored := make(map[string]string) // id -> body
	bodies := make(map[string]int)
	// Acknowledged means in the intake: the last may not be applied yet.
	if err := caddymodule.ApplyIntake(g.dataDir); err != nil {
		t.Fatal(err)
	}
	rows, err := g.eventDB("busy").Query("SELECT id, body FROM events")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, body string
		if err := rows.Scan(&id, &body); err != nil {
			t.Fatal(err)
		}
		stored[id] = body
		bodies[body]++
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	var all int
	for _, list := range events {
		all += len(list)
		for _, ev := range list {
			body, ok := stored[ev.id]
			switch {
			case !ok:
				t.Errorf("acknowledged event %s (%s) is not in busy's event DB", ev.id, ev.body)
			case body != ev.body:
				t.Errorf("event %s holds %s, was sent %s", ev.id, body, ev.body)
			}
		}
	}
	if len(stored) != all {
		t.Errorf("busy's event DB holds %d events, %d were acknowledged", len(stored), all)
	}
	for body, n := range bodies {
		if n > 1 {
			t.Errorf("%s is stored %d times", body, n)
		}
	}
	for name, id := range added {
		if ids := eventIDs(t, g.eventDB(name)); len(ids) != 1 || !ids[id] {
			t.Errorf("%s's event DB holds %d events, want only %s", name, len(ids), id)
		}
	}
}

// TestReloadRemovesAndRestoresWebhook checks that a webhook dropped from the
// Caddyfile stops answering while its event DB is kept, and that declaring
// it again (same name, so same id and file) brings back its events.
func TestReloadRemovesAndRestoresWebhook(t *testing.T) {
	const keep = `
		webhook keep {
			entrypoint keep-in
			target archive database
		}
`
	const gone = `
		webhook gone {
			entrypoint gone-in
			target archive database
		}
`
	g := startGateway(t, keep+gone)
	first := g.mustIngest("gone-in", `{"n":1}`)

	g.reload(keep)
	if status, body := g.post("gone-in", `{"n":2}`); status != http.StatusNotFound {
		t.Errorf("entrypoint of a removed webhook: status %d (%s), want 404", status, body)
	}
	g.mustIngest("keep-in", `{}`)
	if ids := eventIDs(t, g.eventDB("gone")); len(ids) != 1 || !ids[first] {
		t.Errorf("the removed webhook's event DB holds %v, want its event %s kept", ids, first)
	}

	g.reload(keep + gone)
	second := g.mustIngest("gone-in", `{"n":3}`)
	if ids := eventIDs(t, g.eventDB("gone")); len(ids) != 2 || !ids[first] || !ids[second] {
		t.Errorf("the restored webhook's event DB holds %v, want %s and %s", ids, first, second)
	}
}
