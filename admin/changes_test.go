package admin_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/webhooker/caddy-webhooker/admin"
)

// streamClient reads GET /webhooker/stream of a real server, message by
// message.
type streamClient struct {
	t      *testing.T
	cancel context.CancelFunc
	msgs   chan streamMsg
}

type streamMsg struct {
	event, data string
}

func openStream(t *testing.T, baseURL, key string) *streamClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r, err := http.NewRequestWithContext(ctx, "GET", baseURL+"/webhooker/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		r.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	c := &streamClient{t: t, cancel: cancel, msgs: make(chan streamMsg, 1000)}
	go func() {
		defer resp.Body.Close()
		defer close(c.msgs)
		sc := bufio.NewScanner(resp.Body)
		var m streamMsg
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if m.event != "" {
					c.msgs <- m
				}
				m = streamMsg{}
			case strings.HasPrefix(line, "event: "):
				m.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				m.data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	t.Cleanup(cancel)
	return c
}

// next is the webhook id of the next change message.
func (c *streamClient) next() string {
	c.t.Helper()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			c.t.Fatal("the stream ended")
		}
		var d struct {
			WebhookID string `json:"webhook_id"`
		}
		if m.event != "change" || json.Unmarshal([]byte(m.data), &d) != nil {
			c.t.Fatalf("message %+v is not a change", m)
		}
		return d.WebhookID
	case <-time.After(10 * time.Second):
		c.t.Fatal("no message in 10 s")
		return ""
	}
}

func streamEnv(t *testing.T) (*env, *admin.Changes) {
	changes := admin.NewChanges()
	e := newEnvWith(t, func(b *admin.Backend) { b.Changes = changes })
	return e, changes
}

func waitListeners(t *testing.T, c *admin.Changes, n int) {
	t.Helper()
	eventually(t, "listeners", func() (bool, string) {
		return c.Listeners() == n, fmt.Sprint(c.Listeners())
	})
}

func TestStreamTellsChangesCoalescedAndEndsWithTheClient(t *testing.T) {
	e, changes := streamEnv(t)
	srv := httptest.NewServer(e.admin)
	t.Cleanup(srv.Close) // after the stream's cancel, which Close would wait for
	c := openStream(t, srv.URL, "")
	if n := changes.Listeners(); n != 1 {
		t.Fatalf("%d listeners once the stream answered, want 1", n)
	}

	a := uuid.NewString()
	changes.Publish(a)
	if got := c.next(); got != a {
		t.Fatalf("first change %s, want %s", got, a)
	}
	// A burst on one webhook: 100 changes of a, each followed by a change
	// of a new webhook that is told at once and read before the next. a is
	// told at most once per window, held changes when the window ends.
	start := time.Now()
	told := 0
	for range 100 {
		changes.Publish(a)
		other := uuid.NewString()
		changes.Publish(other)
		for {
			id := c.next()
			if id == other {
				break
			}
			if id != a {
				t.Fatalf("told of %s", id)
			}
			told++
		}
	}
	if most := int(time.Since(start)/(500*time.Millisecond)) + 1; told > most {
		t.Errorf("100 changes of one webhook in %v told %d times, want at most %d", time.Since(start), told, most)
	}
	t.Logf("100 changes of one webhook in %v: told %d times", time.Since(start), told)
	// The client goes: its listener and goroutine go with it.
	c.cancel()
	waitListeners(t, changes, 0)
	changes.Publish(a) // nobody listens: nothing to do, nothing blocks
}

func TestStreamToATenantTellsOnlyItsWebhooks(t *testing.T) {
	e, changes := streamEnv(t)
	srv := httptest.NewServer(e.tenant)
	t.Cleanup(srv.Close) // after the stream's cancel, which Close would wait for
	_, aliceKey := e.createUser("alice")
	_, bobKey := e.createUser("bob")
	own := func(key string) string {
		var w webhookJSON
		expect(t, serve(t, e.tenant, req{method: "POST", path: "/webhooker/webhooks", key: key,
			body: map[string]any{"name": "hooks"}}), http.StatusCreated, &w)
		return w.ID
	}
	alice, bob := own(aliceKey.Key), own(bobKey.Key)
	operator := e.createWebhook("operator").ID

	c := openStream(t, srv.URL, aliceKey.Key)
	changes.Publish(bob)
	changes.Publish(operator)
	changes.Publish(uuid.NewString()) // no such webhook
	changes.Publish(alice)
	// Published in that order, told in any: alice's alone comes.
	if id := c.next(); id != alice {
		t.Fatalf("alice heard of %s", id)
	}
	// alice's second change is held by the window, bob's is not: were it
	// told, it would come first.
	changes.Publish(bob)
	changes.Publish(alice)
	if id := c.next(); id != alice {
		t.Fatalf("alice heard of %s", id)
	}

	if resp := serve(t, e.tenant, req{method: "GET", path: "/webhooker/stream"}); resp.status != http.StatusUnauthorized {
		t.Errorf("stream without a key: %d, want 401", resp.status)
	}
	c.cancel()
	waitListeners(t, changes, 0)
}

func TestStreamAndSettingsWithoutWiring(t *testing.T) {
	e := newEnvWith(t, func(b *admin.Backend) {
		b.PublicURL = "https://hooks.example.com"
		b.Changes = nil
	})
	if resp := e.call("GET", "/webhooker/stream", nil); resp.status != http.StatusNotFound {
		t.Errorf("stream with no Changes: %d, want 404", resp.status)
	}
	var s struct {
		PublicURL string `json:"public_url"`
		Tenant    bool   `json:"tenant"`
	}
	e.must(http.StatusOK, "GET", "/webhooker/settings", nil, &s)
	if s.PublicURL != "https://hooks.example.com" || s.Tenant {
		t.Errorf("admin settings = %+v", s)
	}
	_, key := e.createUser("alice")
	expect(t, serve(t, e.tenant, req{method: "GET", path: "/webhooker/settings", key: key.Key}), http.StatusOK, &s)
	if !s.Tenant {
		t.Errorf("tenant settings = %+v", s)
	}
}

// TestChangesForwardWhatIsPublishedHereOnly: Forward hears every Publish
// (cluster mode: sent to the other nodes), but not PublishHere (a change
// heard from another node), which would echo it back.
func TestChangesForwardWhatIsPublishedHereOnly(t *testing.T) {
	c := admin.NewChanges()
	var forwarded []string
	c.Forward(func(id string) { forwarded = append(forwarded, id) })
	c.Publish("here")
	c.PublishHere("from-another-node")
	if len(forwarded) != 1 || forwarded[0] != "here" {
		t.Fatalf("forwarded %v, want [here]", forwarded)
	}
}
