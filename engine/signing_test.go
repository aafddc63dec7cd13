package engine

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// verifySignature checks a request as a Standard Webhooks receiver does,
// written from the specification and not from the engine's code: the
// signed content is "<webhook-id>.<webhook-timestamp>.<body>", the key is
// the base64 after "whsec_", and webhook-signature holds space-separated
// "v1,<base64 HMAC-SHA256>" of which one must match.
func verifySignature(secret string, h http.Header, body []byte) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return fmt.Errorf("missing headers: id %q timestamp %q signature %q", id, ts, sigs)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, part := range strings.Split(sigs, " ") {
		if version, sig, ok := strings.Cut(part, ","); ok && version == "v1" && hmac.Equal([]byte(sig), []byte(want)) {
			return nil
		}
	}
	return errors.New("no signature matches")
}

func newSecret(t *testing.T) string {
	t.Helper()
	s, err := storage.NewSigningSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignedDeliveryVerifiesOnFirstAttemptAndRetry(t *testing.T) {
	t.Parallel()
	for _, size := range []int{30, InlineBodyLimit + 1000} { // inline, and read from the event DB
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			t.Parallel()
			secret := newSecret(t)
			tg := newTarget(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				if n == 1 {
					http.Error(w, "down", http.StatusServiceUnavailable)
				}
			})
			env := newEnv(t)
			opts := quick(3)
			// Over a second between attempts: each must carry a timestamp of its own.
			opts.BackoffInitial, opts.BackoffMax = storage.Duration(1500*time.Millisecond), storage.Duration(1500*time.Millisecond)
			opts.SigningSecret = secret
			snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, opts)))
			e := env.start(snap, Options{})

			// The sender signed with Standard Webhooks too: its headers are
			// replaced by the gateway's.
			h := http.Header{}
			h.Set("Webhook-Id", "msg_from_sender")
			h.Set("Webhook-Timestamp", "1000000000")
			h.Set("Webhook-Signature", "v1,c2VuZGVy")
			body := bytes.Repeat([]byte("x"), size)
			in := env.send(e, snap, "shop-in", body, h)
			d := env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
			results := env.results(in.webhookID, d.ID)
			reqs := tg.all()
			if len(reqs) != 2 || len(results) != 2 {
				t.Fatalf("%d requests, %d results: want 2", len(reqs), len(results))
			}
			wantID := MessageID(in.event.ID, d.TargetID)
			for i, r := range reqs {
				if err := verifySignature(secret, r.header, r.body); err != nil {
					t.Errorf("attempt %d: %v (headers %v)", i+1, err, r.header)
				}
				if got := r.header.Get("Webhook-Id"); got != wantID {
					t.Errorf("attempt %d: webhook-id %q, want %q", i+1, got, wantID)
				}
				if n := len(r.header.Values("Webhook-Signature")); n != 1 || strings.Count(r.header.Get("Webhook-Signature"), "v1,") != 1 {
					t.Errorf("attempt %d: webhook-signature %q: want the gateway's only", i+1, r.header.Values("Webhook-Signature"))
				}
				if got, want := r.header.Get("Webhook-Timestamp"), strconv.FormatInt(results[i].StartedAt.Unix(), 10); got != want {
					t.Errorf("attempt %d: webhook-timestamp %s, want the attempt's time %s", i+1, got, want)
				}
			}
			if reqs[0].header.Get("Webhook-Timestamp") == reqs[1].header.Get("Webhook-Timestamp") {
				t.Errorf("the retry has the first attempt's timestamp %s", reqs[0].header.Get("Webhook-Timestamp"))
			}
			// One changed byte fails the independent verification: it checks.
			if err := verifySignature(secret, reqs[1].header, append([]byte("y"), reqs[1].body[1:]...)); err == nil {
				t.Error("a changed body verifies")
			}
			if err := verifySignature(newSecret(t), reqs[1].header, reqs[1].body); err == nil {
				t.Error("another secret verifies")
			}
			env.noErrorLogs()
		})
	}
}

func TestRotatedSecretSignsBesideTheNewOneUntilItsGraceEnds(t *testing.T) {
	t.Parallel()
	oldSecret, newSecret1, staleSecret := newSecret(t), newSecret(t), newSecret(t)
	tg := newTarget(t, nil)
	env := newEnv(t)
	inGrace := quick(0)
	inGrace.SigningSecret, inGrace.SigningSecretPrevious = newSecret1, oldSecret
	inGrace.SigningSecretPreviousUntil = time.Now().Add(time.Hour)
	noEnd := quick(0)
	noEnd.SigningSecret, noEnd.SigningSecretPrevious = newSecret1, oldSecret
	over := quick(0)
	over.SigningSecret, over.SigningSecretPrevious = newSecret1, staleSecret
	over.SigningSecretPreviousUntil = time.Now().Add(-time.Second)
	snap := env.configure(webhook("shop",
		httpTarget("grace", tg.URL+"/grace", inGrace), httpTarget("noend", tg.URL+"/noend", noEnd),
		httpTarget("over", tg.URL+"/over", over)))
	e := env.start(snap, Options{})
	in := env.send(e, snap, "shop-in", []byte(`{"rotated":true}`), nil)
	for _, d := range in.deliveries {
		env.waitStatus(in.webhookID, d.ID, storage.DeliveryDelivered)
	}
	reqs := tg.all()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	for _, r := range reqs {
		sigs := strings.Split(r.header.Get("Webhook-Signature"), " ")
		if err := verifySignature(newSecret1, r.header, r.body); err != nil {
			t.Errorf("new secret: %v", err)
		}
		stale := verifySignature(staleSecret, r.header, r.body)
		old := verifySignature(oldSecret, r.header, r.body)
		switch {
		case len(sigs) == 2 && old == nil && stale != nil: // grace or noend
		case len(sigs) == 1 && old != nil && stale != nil: // over
		default:
			t.Errorf("signatures %q: old secret %v, stale secret %v", sigs, old, stale)
		}
	}
	two := 0
	for _, r := range reqs {
		if strings.Count(r.header.Get("Webhook-Signature"), "v1,") == 2 {
			two++
		}
	}
	if two != 2 {
		t.Errorf("%d requests signed twice, want 2 (grace and noend)", two)
	}
}

func TestUnsignedTargetKeepsSendersStandardWebhooksHeaders(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, nil)
	env := newEnv(t)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, quick(0))))
	e := env.start(snap, Options{})
	h := http.Header{}
	h.Set("Webhook-Id", "msg_from_sender")
	h.Set("Webhook-Timestamp", "1000000000")
	h.Set("Webhook-Signature", "v1,c2VuZGVy")
	in := env.send(e, snap, "shop-in", []byte(`{}`), h)
	env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	r := tg.all()[0]
	for name, want := range map[string]string{"Webhook-Id": "msg_from_sender", "Webhook-Timestamp": "1000000000",
		"Webhook-Signature": "v1,c2VuZGVy"} {
		if got := r.header.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want the sender's %q", name, got, want)
		}
	}
}

func TestRedeliveryKeepsTheWebhookID(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	tg := newTarget(t, nil)
	env := newEnv(t)
	opts := quick(0)
	opts.SigningSecret = secret
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, opts), httpTarget("erp", tg.URL+"/erp", quick(0))))
	e := env.start(snap, Options{})
	in := env.send(e, snap, "shop-in", []byte(`{"again":true}`), nil)
	for _, d := range in.deliveries {
		env.waitStatus(in.webhookID, d.ID, storage.DeliveryDelivered)
	}
	var again []storage.Delivery
	ctx := context.Background()
	err := env.events.With(ctx, in.webhookID, func(db *storage.WebhookDB) error {
		var err error
		again, err = db.Redeliver(ctx, in.event.ID, []string{in.targets[0].ID, in.targets[1].ID})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	e.Notify(TasksForEvent(in.webhookID, in.event, again, in.targets))
	for _, d := range again {
		env.waitStatus(in.webhookID, d.ID, storage.DeliveryDelivered)
	}
	ids := make(map[string][]string) // path -> webhook-ids
	for _, r := range tg.all() {
		path := "/"
		if r.header.Get("Webhook-Signature") == "" {
			path = "/erp"
		} else if err := verifySignature(secret, r.header, r.body); err != nil {
			t.Errorf("redelivered request: %v", err)
		}
		ids[path] = append(ids[path], r.header.Get("Webhook-Id"))
	}
	for path, got := range ids {
		if len(got) != 2 || got[0] != got[1] || got[0] == "" {
			t.Errorf("target %s: webhook-ids %q, want the same twice", path, got)
		}
	}
	if len(ids) != 2 || ids["/"][0] == ids["/erp"][0] {
		t.Errorf("webhook-ids %v: want one per target", ids)
	}
	if again[0].ID == in.deliveries[0].ID {
		t.Error("the redelivery is not a delivery of its own")
	}
}

// ingestQuery stores an event as env.ingest does, with query as its query
// string.
func (env *testEnv) ingestQuery(snap *storage.Snapshot, key, query string, body []byte, header http.Header) ingested {
	env.t.Helper()
	route, _ := snap.Route(key)
	header.Set("Content-Type", "application/json")
	ev := &storage.Event{
		EntrypointID: route.Entrypoint.ID, EntrypointKey: key, Method: http.MethodPost,
		Path: "/hooks/" + key, Query: query, Headers: header, Body: body,
		ContentType: "application/json", RemoteAddr: "192.0.2.7:40000", ReceivedAt: time.Now(),
	}
	var deliveries []storage.Delivery
	err := env.events.With(context.Background(), route.Webhook.ID, func(db *storage.WebhookDB) error {
		var err error
		deliveries, err = db.Ingest(ev, route.Targets)
		return err
	})
	if err != nil {
		env.t.Fatalf("Ingest: %v", err)
	}
	return ingested{webhookID: route.Webhook.ID, event: ev, deliveries: deliveries,
		tasks: TasksForEvent(route.Webhook.ID, ev, deliveries, route.Targets), targets: route.Targets}
}

func TestForwardingIsTransparent(t *testing.T) {
	t.Parallel()
	queries := make(chan string, 4)
	tg := newTarget(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		queries <- r.URL.RawQuery
	})
	env := newEnv(t)
	opts := quick(0)
	opts.HeadersRemove = []string{"authorization", "Cookie", "X-Absent"}
	opts.HeadersAdd = map[string][]string{"X-Tag": {"gateway", "second"}}
	opts.Headers = map[string]string{"X-Env": "prod", "Webhook-Id": "configured"}
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL+"/in?token=t0&a=target", opts)))
	e := env.start(snap, Options{})

	h := http.Header{}
	h.Set("User-Agent", "GitHub-Hookshot/abc123")
	h.Set("Authorization", "Bearer for-the-gateway")
	h.Set("Cookie", "session=1")
	h.Set("X-Tag", "sender")
	h.Set("X-Env", "sender-env")
	in := env.ingestQuery(snap, "shop-in", "a=1&b=2&c=x%20y&flag&A=caps", []byte(`{}`), h)
	e.Notify(in.tasks)
	env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	r := tg.all()[0]

	// The target's parameters first and winning a clash (a), the event's
	// others as they were written.
	if got, want := <-queries, "token=t0&a=target&b=2&c=x%20y&flag&A=caps"; got != want {
		t.Errorf("query %q, want %q", got, want)
	}
	if got := r.header.Get("User-Agent"); got != "GitHub-Hookshot/abc123" {
		t.Errorf("User-Agent %q, want the sender's", got)
	}
	if got := r.header.Get(VersionHeader); got != UserAgent {
		t.Errorf("%s %q, want %q", VersionHeader, got, UserAgent)
	}
	for _, name := range []string{"Authorization", "Cookie"} {
		if v, ok := r.header[name]; ok {
			t.Errorf("%s forwarded: %q", name, v)
		}
	}
	if got := r.header.Values("X-Tag"); strings.Join(got, "|") != "sender|gateway|second" {
		t.Errorf("X-Tag %q, want the sender's then the added ones", got)
	}
	if got := r.header.Values("X-Env"); len(got) != 1 || got[0] != "prod" {
		t.Errorf("X-Env %q, want the configured value alone", got)
	}
	// Unsigned, a configured webhook-id is the operator's to set.
	if got := r.header.Get("Webhook-Id"); got != "configured" {
		t.Errorf("Webhook-Id %q", got)
	}
}

func TestSenderWithoutUserAgentGetsTheGateways(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, nil)
	env := newEnv(t)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, quick(0))))
	e := env.start(snap, Options{})
	in := env.send(e, snap, "shop-in", []byte(`{}`), nil)
	env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	if got := tg.all()[0].header.Get("User-Agent"); got != UserAgent {
		t.Errorf("User-Agent %q, want the gateway's %q", got, UserAgent)
	}
}

func TestSigningHeadersCannotBeOverriddenByConfiguration(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	tg := newTarget(t, nil)
	env := newEnv(t)
	opts := quick(0)
	opts.SigningSecret = secret
	opts.Headers = map[string]string{"Webhook-Id": "configured", "Webhook-Signature": "v1,Zm9yZ2Vk"}
	opts.HeadersAdd = map[string][]string{"Webhook-Timestamp": {"1"}}
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, opts)))
	e := env.start(snap, Options{})
	in := env.send(e, snap, "shop-in", []byte(`{}`), nil)
	env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	r := tg.all()[0]
	if err := verifySignature(secret, r.header, r.body); err != nil {
		t.Errorf("%v (headers %v)", err, r.header)
	}
	if len(r.header.Values("Webhook-Timestamp")) != 1 || len(r.header.Values("Webhook-Signature")) != 1 {
		t.Errorf("headers %v: want the gateway's signing headers alone", r.header)
	}
}

func TestSecretsStayOutOfLogsAndResults(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	tg := newTarget(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusInternalServerError)
	})
	env := newEnv(t)
	opts := quick(1)
	opts.SigningSecret = secret
	opts.HeadersAdd = map[string][]string{"X-Api-Key": {"added-credential-value"}}
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL+"?key=url-secret", opts), storage.Target{Name: "audit", Type: storage.TargetLog}))
	e := env.start(snap, Options{})
	in := env.send(e, snap, "shop-in", []byte(`{}`), nil)
	d := env.waitStatus(in.webhookID, in.to(t, "crm").ID, storage.DeliveryFailed)
	env.waitStatus(in.webhookID, in.to(t, "audit").ID, storage.DeliveryDelivered)
	key := strings.TrimPrefix(secret, "whsec_")
	var seen strings.Builder
	for _, entry := range env.logs.All() {
		fmt.Fprintf(&seen, "%s %v\n", entry.Message, entry.ContextMap())
	}
	for _, r := range env.results(in.webhookID, d.ID) {
		fmt.Fprintf(&seen, "%s %s\n", r.Error, r.ResponseBody)
	}
	fmt.Fprintf(&seen, "%s\n", d.LastError)
	for _, s := range []string{key, "added-credential-value", "url-secret"} {
		if strings.Contains(seen.String(), s) {
			t.Errorf("%q in the logs or the event log:\n%s", s, seen.String())
		}
	}
}

func TestMergeQuery(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ target, event, want string }{
		{"", "", ""},
		{"a=1", "", "a=1"},
		{"", "a=1&b=2", "a=1&b=2"},
		{"a=1", "a=2&b=3", "a=1&b=3"},
		{"a%3D=1", "a%3D=2&a==3", "a%3D=1&a==3"}, // keys compared unescaped
		{"x=1", "b=%zz&&c", "x=1&b=%zz&c"},       // kept as written
		{"", "q=a b#c\r\nX: y\x80", "q=a%20b%23c%0D%0AX:%20y%80"},
		{"a", "a=2", "a"},
	} {
		if got := mergeQuery(c.target, c.event); got != c.want {
			t.Errorf("mergeQuery(%q, %q) = %q, want %q", c.target, c.event, got, c.want)
		}
		if _, err := url.Parse("http://h/?" + mergeQuery(c.target, c.event)); err != nil {
			t.Errorf("merged %q: %v", c.event, err)
		}
	}
}

func TestMessageIDIsStablePerEventAndTarget(t *testing.T) {
	t.Parallel()
	a := MessageID("01a2-event", "target-1")
	if a != MessageID("01a2-event", "target-1") || !strings.HasPrefix(a, "msg_") {
		t.Errorf("MessageID = %q", a)
	}
	for _, other := range []string{MessageID("01a2-event", "target-2"), MessageID("01a2-event2", "target-1"),
		MessageID("01a2-event\x00target", "-1")} {
		if other == a {
			t.Errorf("two messages share the id %s", a)
		}
	}
}

// A body that is not seekable is read once to be signed and sent whole.
func TestSignBodyOfAnyReader(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	key, _ := storage.DecodeSigningSecret(secret)
	body := strings.Repeat("b", 100)
	sig, rest, err := signBody([]signingKey{key}, "msg_1", 1700000000, io.MultiReader(strings.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rest)
	h := http.Header{"Webhook-Id": {"msg_1"}, "Webhook-Timestamp": {"1700000000"}, "Webhook-Signature": {sig}}
	if string(got) != body || verifySignature(secret, h, got) != nil {
		t.Errorf("body %q, signature %q", got, sig)
	}
}
