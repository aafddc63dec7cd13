package caddymodule_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	// GitHub's documented test vector ("Validating webhook deliveries").
	githubSecret    = "It's a Secret to Everybody"
	githubBody      = "Hello, World!"
	githubSignature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

	stripeSecret = "whsec_test_entrypoint_secret"
	zoomSecret   = "zoom-secret-token"
	metaToken    = "meatyhamhock"
)

// verifiedGateway declares one entrypoint per scheme and handshake under
// test, all storing into the webhook "guarded"; "open" has no checks.
func verifiedGateway(t *testing.T) *gatewayTest {
	t.Helper()
	return startGateway(t, `
		webhook guarded {
			entrypoint gh {
				verify github "`+githubSecret+`"
			}
			entrypoint stripe-in {
				tolerance 5m
				verify stripe `+stripeSecret+`
			}
			entrypoint slack-in {
				handshake slack
			}
			entrypoint meta-in {
				handshake meta `+metaToken+`
			}
			entrypoint graph-in {
				handshake graph
			}
			entrypoint dropbox-in {
				handshake dropbox
			}
			entrypoint zoom-in {
				handshake zoom `+zoomSecret+`
				verify bearer never-sent-token
			}
			entrypoint open
			target archive database
		}
`)
}

func (g *gatewayTest) send(method, key, query string, header http.Header, body string) (int, http.Header, string) {
	g.t.Helper()
	u := siteURL + "/hooks/" + key
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	status, h, b := g.do(req)
	return status, h, string(b)
}

func stripeHeader(secret, body string, at time.Time) string {
	ts := strconv.FormatInt(at.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + body))
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// TestVerifiedEntrypointsThroughCaddy sends signed and forged requests to
// entrypoints declared with verify in a Caddyfile: the authentic ones are
// stored, the others refused with 401 naming scheme and reason, nothing
// stored, and counted on /metrics.
func TestVerifiedEntrypointsThroughCaddy(t *testing.T) {
	g := verifiedGateway(t)
	tampered := []byte(githubBody)
	tampered[0] ^= 1
	now := time.Now()
	stripeBody := `{"id":"evt_1","type":"charge.succeeded"}`
	for _, c := range []struct {
		name, key string
		header    http.Header
		body      string
		want      int
		wantError string
	}{
		{"github's documented vector", "gh", http.Header{"X-Hub-Signature-256": {githubSignature}}, githubBody, 200, ""},
		{"github, one byte changed", "gh", http.Header{"X-Hub-Signature-256": {githubSignature}}, string(tampered), 401,
			"verification failed: github: mismatch"},
		{"github, no signature", "gh", nil, githubBody, 401, "verification failed: github: missing"},
		{"stripe, signed now", "stripe-in", http.Header{"Stripe-Signature": {stripeHeader(stripeSecret, stripeBody, now)}}, stripeBody, 200, ""},
		{"stripe, signed 10 minutes ago", "stripe-in", http.Header{"Stripe-Signature": {stripeHeader(stripeSecret, stripeBody, now.Add(-10*time.Minute))}},
			stripeBody, 401, "verification failed: stripe: too_old"},
		{"stripe, another secret", "stripe-in", http.Header{"Stripe-Signature": {stripeHeader("whsec_other", stripeBody, now)}}, stripeBody, 401,
			"verification failed: stripe: mismatch"},
		{"no checks", "open", nil, `{"n":1}`, 200, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := g.storedEvents("guarded")
			status, h, body := g.send(http.MethodPost, c.key, "", c.header, c.body)
			if status != c.want {
				t.Fatalf("status %d (%s), want %d", status, body, c.want)
			}
			stored := g.storedEvents("guarded") - before
			if c.want == 200 {
				eventIDFrom(t, []byte(body))
				if stored != 1 {
					t.Errorf("%d events stored, want 1", stored)
				}
				return
			}
			if stored != 0 {
				t.Errorf("%d events stored by a refused request, want none", stored)
			}
			if ct := h.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			var answer struct{ Error string }
			if err := json.Unmarshal([]byte(body), &answer); err != nil || answer.Error != c.wantError {
				t.Errorf("answer %q, want {\"error\": %q}", body, c.wantError)
			}
			for _, secret := range []string{githubSecret, stripeSecret, "757107ea"} {
				if strings.Contains(body, secret) {
					t.Errorf("the answer shows a secret or the expected signature: %s", body)
				}
			}
		})
	}

	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for series, least := range map[string]float64{
		`caddy_webhooker_verification_failures_total{reason="mismatch",scheme="github"}`: 1,
		`caddy_webhooker_verification_failures_total{reason="too_old",scheme="stripe"}`:  1,
		`caddy_webhooker_ingest_requests_total{code="401"}`:                              4,
	} {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(string(metrics))
		if m == nil {
			t.Errorf("/metrics has no %s", series)
			continue
		}
		if v, _ := strconv.ParseFloat(m[1], 64); v < least {
			t.Errorf("%s = %v, want at least %v", series, v, least)
		}
	}
}

// TestHandshakesThroughCaddy sends each provider's documented handshake
// (as the handshake package's tests do) to an entrypoint declaring it: each
// is answered as the provider expects and nothing is stored. A GET reaches
// only an entrypoint whose handshake uses GET.
func TestHandshakesThroughCaddy(t *testing.T) {
	g := verifiedGateway(t)
	const (
		slackBody      = `{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`
		slackChallenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
		graphQuery     = "validationToken=Validation%3A+Testing+client+application+reachability+for+subscription+Request-Id%3A+522a8e7e-096a-494c-aaf1-ac0dcfca45b7"
		graphToken     = "Validation: Testing client application reachability for subscription Request-Id: 522a8e7e-096a-494c-aaf1-ac0dcfca45b7"
		zoomPlain      = "qgg8vlvZRS6UYooatFL8Aw"
		// HMAC-SHA256("zoom-secret-token", zoomPlain), from the handshake package's tests.
		zoomEncrypted = "d9e0d764a78494688ba3f2d5c0ed4ca311394b4834d959759213424d2df961e3"
		zoomBody      = `{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}`
	)
	zoomTS := strconv.FormatInt(time.Now().Unix(), 10)
	zmac := hmac.New(sha256.New, []byte(zoomSecret))
	zmac.Write([]byte("v0:" + zoomTS + ":" + zoomBody))
	zoomHeader := http.Header{
		"X-Zm-Request-Timestamp": {zoomTS},
		"X-Zm-Signature":         {"v0=" + hex.EncodeToString(zmac.Sum(nil))},
		"Content-Type":           {"application/json; charset=utf-8"},
	}
	for _, c := range []struct {
		name, method, key, query string
		header                   http.Header
		body                     string
		contentType, wantBody    string
	}{
		{"slack", "POST", "slack-in", "", http.Header{"Content-Type": {"application/json"}}, slackBody, "text/plain", slackChallenge},
		{"meta", "GET", "meta-in", "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=" + metaToken, nil, "", "text/plain", "1158201444"},
		{"graph", "POST", "graph-in", graphQuery, http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, "", "text/plain", graphToken},
		{"dropbox", "GET", "dropbox-in", "challenge=abc123", nil, "", "text/plain", "abc123"},
		{"zoom, on an entrypoint that verifies its events", "POST", "zoom-in", "", zoomHeader, zoomBody, "application/json",
			`{"plainToken":"` + zoomPlain + `","encryptedToken":"` + zoomEncrypted + `"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := g.storedEvents("guarded")
			status, h, body := g.send(c.method, c.key, c.query, c.header, c.body)
			if status != http.StatusOK {
				t.Fatalf("status %d (%s), want 200", status, body)
			}
			if ct := h.Get("Content-Type"); ct != c.contentType {
				t.Errorf("Content-Type %q, want %q", ct, c.contentType)
			}
			if body != c.wantBody {
				t.Errorf("body %q, want %q", body, c.wantBody)
			}
			if stored := g.storedEvents("guarded") - before; stored != 0 {
				t.Errorf("a handshake stored %d events, want none", stored)
			}
		})
	}

	t.Run("meta with a wrong token", func(t *testing.T) {
		status, _, body := g.send("GET", "meta-in", "hub.mode=subscribe&hub.challenge=1&hub.verify_token=wrong", nil, "")
		if status < 400 || status >= 500 || strings.Contains(body, metaToken) {
			t.Errorf("status %d (%s), want a 4xx that does not show the token", status, body)
		}
	})
	t.Run("an event after the handshake is stored", func(t *testing.T) {
		before := g.storedEvents("guarded")
		status, _, body := g.send("POST", "slack-in", "", http.Header{"Content-Type": {"application/json"}}, `{"type":"event_callback"}`)
		if status != http.StatusOK || g.storedEvents("guarded")-before != 1 {
			t.Errorf("status %d (%s), want 200 and the event stored", status, body)
		}
	})
	t.Run("an event on an entrypoint with a handshake and verify must pass verify", func(t *testing.T) {
		status, _, body := g.send("POST", "zoom-in", "", http.Header{"Content-Type": {"application/json"}}, `{"event":"meeting.started"}`)
		if status != http.StatusUnauthorized {
			t.Errorf("status %d (%s), want 401", status, body)
		}
	})
	for _, key := range []string{"gh", "open", "slack-in", "graph-in", "zoom-in", "no-such-key"} {
		t.Run("GET "+key, func(t *testing.T) {
			status, h, body := g.send("GET", key, "challenge=abc123", nil, "")
			if status != http.StatusMethodNotAllowed || h.Get("Allow") != "POST" {
				t.Errorf("status %d, Allow %q (%s), want 405 with Allow: POST", status, h.Get("Allow"), body)
			}
		})
	}
	t.Run("PUT to a GET handshake", func(t *testing.T) {
		if status, _, body := g.send("PUT", "dropbox-in", "challenge=abc", nil, ""); status != http.StatusMethodNotAllowed {
			t.Errorf("status %d (%s), want 405", status, body)
		}
	})
}

// TestEntrypointSecretFromEnv: a secret written {env.X} is the environment's
// value when the config is provisioned.
func TestEntrypointSecretFromEnv(t *testing.T) {
	t.Setenv("WEBHOOKER_TEST_GITHUB_SECRET", githubSecret)
	g := startGateway(t, `
		webhook fromenv {
			entrypoint gh-env {
				verify github {env.WEBHOOKER_TEST_GITHUB_SECRET}
			}
			target archive database
		}
`)
	status, _, body := g.send("POST", "gh-env", "", http.Header{"X-Hub-Signature-256": {githubSignature}}, githubBody)
	if status != http.StatusOK || g.storedEvents("fromenv") != 1 {
		t.Errorf("status %d (%s), want 200 and the event stored", status, body)
	}
}

// TestEntrypointOptionMistakesNameTheirLine: each verify, tolerance or
// handshake mistake is refused by the Caddyfile adapter at its line, and
// the error never shows the secret.
func TestEntrypointOptionMistakesNameTheirLine(t *testing.T) {
	const secret = "do-not-print-me"
	for _, c := range []struct {
		name  string
		block string // lines of the webhooker block, from line 3
		line  int
		want  string
	}{
		{"unknown scheme", "webhook a {\n\tentrypoint k {\n\t\tverify gitlab " + secret + "\n\t}\n}", 5, `unknown scheme "gitlab"`},
		{"no secret", "webhook a {\n\tentrypoint k {\n\t\tverify github\n\t}\n}", 5, "verify github"},
		{"basic_auth without password", "webhook a {\n\tentrypoint k {\n\t\tverify basic_auth " + secret + "\n\t}\n}", 5, "want 2 arguments"},
		{"standard_webhooks secret not whsec_", "webhook a {\n\tentrypoint k {\n\t\tverify standard_webhooks " + secret + "\n\t}\n}", 5, "standard_webhooks"},
		{"hmac without header", "webhook a {\n\tentrypoint k {\n\t\tverify hmac " + secret + "\n\t}\n}", 5, "verify hmac: header"},
		{"hmac algorithm", "webhook a {\n\tentrypoint k {\n\t\tverify hmac " + secret + " {\n\t\t\theader X-Sig\n\t\t\talgorithm md5\n\t\t}\n\t}\n}", 8, "md5"},
		{"block on github", "webhook a {\n\tentrypoint k {\n\t\tverify github " + secret + " {\n\t\t\theader X-Sig\n\t\t}\n\t}\n}", 6, "applies to hmac only"},
		{"tolerance without a timestamped scheme", "webhook a {\n\tentrypoint k {\n\t\ttolerance 1m\n\t\tverify github " + secret + "\n\t}\n}", 5,
			"tolerance applies only to verify"},
		{"tolerance twice", "webhook a {\n\tentrypoint k {\n\t\ttolerance 1m\n\t\ttolerance 2m\n\t}\n}", 6, "tolerance is set twice"},
		{"unknown handshake", "webhook a {\n\tentrypoint k {\n\t\thandshake github\n\t}\n}", 5, `unknown handshake "github"`},
		{"meta without token", "webhook a {\n\tentrypoint k {\n\t\thandshake meta\n\t}\n}", 5, "handshake meta takes exactly one verify token"},
		{"two handshakes", "webhook a {\n\tentrypoint k {\n\t\thandshake slack\n\t\thandshake zoom " + secret + "\n\t}\n}", 6, "handshake is set twice"},
		{"unknown option", "webhook a {\n\tentrypoint k {\n\t\tsecret " + secret + "\n\t}\n}", 5, `unrecognized option "secret"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := adaptWebhooker(t, "{\n\twebhooker {\n"+c.block+"\n\t}\n}\n")
			if err == nil {
				t.Fatalf("adapted without an error")
			}
			t.Logf("%s", err)
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("the error does not say %q", c.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the error shows the secret")
			}
			if at := fmt.Sprintf("Caddyfile:%d", c.line); !strings.HasSuffix(err.Error(), ", at "+at) {
				t.Errorf("the error is not at %s", at)
			}
		})
	}
}

// TestEntrypointOptionsAdapted: the Caddyfile's entrypoint block becomes the
// entrypoint's "options" in Caddy's JSON, {env.X} kept for Provision (the
// adapter checks the value the environment has then).
func TestEntrypointOptionsAdapted(t *testing.T) {
	t.Setenv("HMAC_KEY", "k")
	raw, err := adaptWebhooker(t, "{\n\twebhooker {\n\t\twebhook a {\n\t\t\tentrypoint k {\n"+
		"\t\t\t\tverify hmac {env.HMAC_KEY} {\n\t\t\t\t\theader X-Sig\n\t\t\t\t\tprefix v1=\n\t\t\t\t}\n"+
		"\t\t\t\tverify stripe whsec_a whsec_b\n\t\t\t\ttolerance 2m\n\t\t\t\thandshake dropbox\n\t\t\t}\n\t\t}\n\t}\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	want := `"entrypoints":[{"key":"k","options":{"verify":[{"scheme":"hmac","secrets":["{env.HMAC_KEY}"],"header":"X-Sig","prefix":"v1="},` +
		`{"scheme":"stripe","secrets":["whsec_a","whsec_b"]}],"tolerance":"2m0s","handshake":{"name":"dropbox"}}}]`
	if !strings.Contains(string(raw), want) {
		t.Errorf("adapted to %s, want it to hold %s", raw, want)
	}
}

// TestVerifiedSchemeRecordedAndDelivered: an event that passed verify keeps
// the scheme in its event DB and its deliveries carry Webhooker-Verified;
// an event of an entrypoint without verify carries none, even when its
// sender wrote one.
func TestVerifiedSchemeRecordedAndDelivered(t *testing.T) {
	got := make(chan http.Header, 4)
	next := func() http.Header {
		t.Helper()
		select {
		case h := <-got:
			return h
		case <-time.After(10 * time.Second):
			t.Fatal("no delivery within 10s")
			return nil
		}
	}
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
	}))
	defer receiver.Close()
	g := startGateway(t, `
		target_policy {
			allow 127.0.0.0/8
		}
		webhook relayed {
			entrypoint gh-relay {
				verify github "`+githubSecret+`"
			}
			entrypoint unverified-relay
			target receiver http `+receiver.URL+`/in
		}
`)
	status, _, body := g.send("POST", "gh-relay", "", http.Header{"X-Hub-Signature-256": {githubSignature}}, githubBody)
	if status != http.StatusOK {
		t.Fatalf("status %d (%s)", status, body)
	}
	id := eventIDFrom(t, []byte(body))
	if h := next(); h.Get("Webhooker-Verified") != "github" {
		t.Errorf("the delivery of a verified event has Webhooker-Verified %q, want github", h.Get("Webhooker-Verified"))
	}
	var verified string
	if err := g.eventDB("relayed").QueryRow(`SELECT verified FROM events WHERE id = ?`, id).Scan(&verified); err != nil || verified != "github" {
		t.Errorf("the event DB has verified %q (%v), want github", verified, err)
	}

	status, _, body = g.send("POST", "unverified-relay", "", http.Header{"Webhooker-Verified": {"github"}}, `{"forged":true}`)
	if status != http.StatusOK {
		t.Fatalf("status %d (%s)", status, body)
	}
	if h := next(); len(h.Values("Webhooker-Verified")) != 0 {
		t.Errorf("the delivery of an unverified event carries Webhooker-Verified %q, the sender's", h.Values("Webhooker-Verified"))
	}
}
