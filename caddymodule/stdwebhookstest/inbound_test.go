package stdwebhookstest_test

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// TestEntrypointVerifiesReferenceLibrarySignatures: a provider that signs
// with the Standard Webhooks reference library reaches an entrypoint with
// `verify standard_webhooks`: its request is taken (200); the same request
// signed 10 minutes ago, another secret's signature, and a changed body are
// refused with 401.
func TestEntrypointVerifiesReferenceLibrarySignatures(t *testing.T) {
	provider, err := standardwebhooks.NewWebhook(senderSecret)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := standardwebhooks.NewWebhook(oldSecret)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`{
	admin localhost:%d
	http_port %d
	https_port %d
	webhooker {
		data_dir %s
		webhook signed {
			entrypoint signed-in {
				verify standard_webhooks %s
			}
			target keep database
		}
	}
}

%s {
	webhooker /hooks/*
}
`, adminPort, httpPort, httpsPort, t.TempDir(), senderSecret, siteURL)
	startCaddy(t, cfg)

	body := []byte(`{"type":"invoice.paid","id":"evt_1"}`)
	post := func(signer *standardwebhooks.Webhook, at time.Time, sent []byte) (int, string) {
		t.Helper()
		sig, err := signer.Sign("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", at, body)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, siteURL+"/hooks/signed-in", strings.NewReader(string(sent)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("webhook-id", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
		req.Header.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
		req.Header.Set("webhook-signature", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, b := post(provider, time.Now(), body); code != http.StatusOK || !strings.Contains(b, "event_id") {
		t.Errorf("signed by the provider now: %d %s, want 200 with an event id", code, b)
	}
	changed := append([]byte(nil), body...)
	changed[10] ^= 1
	for name, c := range map[string]struct {
		signer *standardwebhooks.Webhook
		at     time.Time
		sent   []byte
		reason string
	}{
		"10 minutes old":   {provider, time.Now().Add(-10 * time.Minute), body, "too_old"},
		"another secret":   {stranger, time.Now(), body, "mismatch"},
		"one byte changed": {provider, time.Now(), changed, "mismatch"},
		"10 minutes ahead": {provider, time.Now().Add(10 * time.Minute), body, "too_new"},
	} {
		code, b := post(c.signer, c.at, c.sent)
		if code != http.StatusUnauthorized || !strings.Contains(b, "standard_webhooks") || !strings.Contains(b, c.reason) {
			t.Errorf("%s: %d %s, want 401 naming standard_webhooks and %s", name, code, b, c.reason)
		}
		if strings.Contains(b, senderSecret) || strings.Contains(b, strings.TrimPrefix(senderSecret, "whsec_")) {
			t.Errorf("%s: the answer holds the secret", name)
		}
	}
}
