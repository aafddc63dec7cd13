package stdwebhookstest_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddytest"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	// Registers the webhooker app, the handler and the Caddyfile syntax.
	_ "github.com/webhooker/caddy-webhooker/caddymodule"
	"github.com/webhooker/caddy-webhooker/storage"
)

// The ports of this test binary's Caddy, apart from caddymodule's (2999,
// 9080, 9443), browsertest's (2998, 9082, 9445) and the bench's.
const (
	adminPort = 2997
	httpPort  = 9084
	httpsPort = 9447
)

var (
	adminURL = fmt.Sprintf("http://localhost:%d", adminPort)
	siteURL  = fmt.Sprintf("http://localhost:%d", httpPort)
)

// TestMain keeps Caddy's autosaved config and data out of the home directory.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "webhooker-stdwebhookstest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	os.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	caddy.ConfigAutosavePath = filepath.Join(dir, "config", "caddy", "autosave.json")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// A secret the gateway had, and the one that replaced it.
const (
	oldSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	newSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
	// senderSecret is the provider's, which the receiver does not know.
	senderSecret = "whsec_bm90LXRoZS1nYXRld2F5cy1rZXktYXQtYWxs"
)

type hit struct {
	header http.Header
	body   []byte
	// verified says which secrets the reference library accepted.
	oldOK, newOK error
}

// TestReferenceLibraryVerifiesTheGatewaysSignatures: a provider's request
// signed 10 minutes ago (which the library refuses as too old) goes through
// the gateway to a receiver that verifies with the reference library: the
// first attempt (answered 500) and the retry both verify, with the old and
// the new secret of a rotation, under one webhook-id; a manual redelivery
// verifies under the same id.
func TestReferenceLibraryVerifiesTheGatewaysSignatures(t *testing.T) {
	oldWH, err := standardwebhooks.NewWebhook(oldSecret)
	if err != nil {
		t.Fatal(err)
	}
	newWH, err := standardwebhooks.NewWebhook(newSecret)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		hits []hit
	)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h := hit{header: r.Header.Clone(), body: body, oldOK: oldWH.Verify(body, r.Header), newOK: newWH.Verify(body, r.Header)}
		mu.Lock()
		hits = append(hits, h)
		n := len(hits)
		mu.Unlock()
		if n == 1 {
			http.Error(w, "not yet", http.StatusInternalServerError)
		}
	}))
	defer receiver.Close()
	received := func() []hit {
		mu.Lock()
		defer mu.Unlock()
		return append([]hit(nil), hits...)
	}

	until := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	dataDir := t.TempDir()
	cfg := fmt.Sprintf(`{
	admin localhost:%d
	http_port %d
	https_port %d
	webhooker {
		data_dir %s
		webhook shop {
			entrypoint shop-in
			target crm http %s/in {
				signing_secret %s
				signing_secret_previous %s until %s
				backoff 1500ms
				max_retries 3
			}
		}
	}
}

%s {
	webhooker /hooks/*
}
`, adminPort, httpPort, httpsPort, dataDir, receiver.URL, newSecret, oldSecret, until, siteURL)
	startCaddy(t, cfg)

	// The provider signed 10 minutes ago: the library refuses its signature.
	sender, err := standardwebhooks.NewWebhook(senderSecret)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"type":"order.created","data":{"id":42}}`)
	signedAt := time.Now().Add(-10 * time.Minute)
	senderSig, err := sender.Sign("msg_sender_1", signedAt, body)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, siteURL+"/hooks/shop-in", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Webhook-Id", "msg_sender_1")
	req.Header.Set("Webhook-Timestamp", fmt.Sprint(signedAt.Unix()))
	req.Header.Set("Webhook-Signature", senderSig)
	if err := sender.Verify(body, req.Header); err == nil {
		t.Fatal("the library accepts a 10-minute-old signature: the test would show nothing")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	ack, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ingest: %d %s", resp.StatusCode, ack)
	}
	var eventID string
	if _, err := fmt.Sscanf(strings.TrimSpace(string(ack)), `{"event_id":%q}`, &eventID); err != nil {
		t.Fatalf("ingest answer %s: %v", ack, err)
	}

	waitFor(t, "the first attempt and its retry", func() bool { return len(received()) >= 2 })

	// A manual redelivery, through the admin API.
	redeliver := fmt.Sprintf("%s/webhooker/webhooks/%s/events/%s/redeliver", adminURL, storage.DeclaredWebhookID("shop"), eventID)
	resp, err = http.Post(redeliver, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("redeliver: %d %s", resp.StatusCode, answer)
	}
	waitFor(t, "the redelivery", func() bool { return len(received()) >= 3 })

	got := received()
	if len(got) != 3 {
		t.Fatalf("%d requests, want 3", len(got))
	}
	for i, h := range got {
		what := []string{"first attempt", "retry", "redelivery"}[i]
		if h.oldOK != nil || h.newOK != nil {
			t.Errorf("%s: the reference library says old secret: %v, new secret: %v (headers %v)", what, h.oldOK, h.newOK, h.header)
		}
		if string(h.body) != string(body) {
			t.Errorf("%s: body %q", what, h.body)
		}
		if id := h.header.Get("Webhook-Id"); id != got[0].header.Get("Webhook-Id") || id == "msg_sender_1" {
			t.Errorf("%s: webhook-id %q, want the gateway's, the same for every attempt and redelivery", what, id)
		}
	}
	if got[0].header.Get("Webhook-Timestamp") == got[1].header.Get("Webhook-Timestamp") {
		t.Errorf("the retry kept the first attempt's timestamp %s", got[0].header.Get("Webhook-Timestamp"))
	}
}

// waitFor polls cond every 10 ms, failing the test after 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// startCaddy loads cfg, a Caddyfile, into this test binary's in-process
// Caddy (starting it if needed); when the test ends an empty config lets go
// of the databases before t.TempDir removes them.
func startCaddy(t *testing.T, cfg string) {
	t.Helper()
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{
		AdminPort: adminPort, LoadRequestTimeout: 60 * time.Second, TestRequestTimeout: 60 * time.Second,
	})
	tester.InitServer(cfg, "caddyfile")
	t.Cleanup(func() {
		req, _ := http.NewRequest(http.MethodPost, adminURL+"/load",
			strings.NewReader(fmt.Sprintf("{\n\tadmin localhost:%d\n}\n", adminPort)))
		req.Header.Set("Content-Type", "text/caddyfile")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
}
