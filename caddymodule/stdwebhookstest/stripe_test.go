package stdwebhookstest_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v84/webhook"
)

// TestEntrypointVerifiesStripeLibrarySignatures: requests signed by
// stripe-go's own webhook package (GenerateTestSignedPayload, what Stripe
// sends in Stripe-Signature) reach an entrypoint with `verify stripe`: taken
// when fresh; refused (401) when signed 10 minutes ago, with another
// secret, or with one byte of the body changed.
func TestEntrypointVerifiesStripeLibrarySignatures(t *testing.T) {
	const secret, other = "whsec_test_stripe_endpoint_secret", "whsec_some_other_endpoint"
	cfg := fmt.Sprintf(`{
	admin localhost:%d
	http_port %d
	https_port %d
	webhooker {
		data_dir %s
		webhook payments {
			entrypoint stripe-in {
				verify stripe %s
			}
			target keep database
		}
	}
}

%s {
	webhooker /hooks/*
}
`, adminPort, httpPort, httpsPort, t.TempDir(), secret, siteURL)
	startCaddy(t, cfg)

	body := []byte(`{"id":"evt_1","object":"event","type":"payment_intent.succeeded"}`)
	post := func(signWith string, at time.Time, sent []byte) (int, string) {
		t.Helper()
		signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: signWith, Timestamp: at})
		req, _ := http.NewRequest(http.MethodPost, siteURL+"/hooks/stripe-in", strings.NewReader(string(sent)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Stripe-Signature", signed.Header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, b := post(secret, time.Now(), body); code != http.StatusOK || !strings.Contains(b, "event_id") {
		t.Errorf("signed by stripe-go now: %d %s, want 200 with an event id", code, b)
	}
	changed := append([]byte(nil), body...)
	changed[8] ^= 1
	for name, c := range map[string]struct {
		secret string
		at     time.Time
		sent   []byte
		reason string
	}{
		"10 minutes old":   {secret, time.Now().Add(-10 * time.Minute), body, "too_old"},
		"another secret":   {other, time.Now(), body, "mismatch"},
		"one byte changed": {secret, time.Now(), changed, "mismatch"},
	} {
		code, b := post(c.secret, c.at, c.sent)
		if code != http.StatusUnauthorized || !strings.Contains(b, "stripe") || !strings.Contains(b, c.reason) {
			t.Errorf("%s: %d %s, want 401 naming stripe and %s", name, code, b, c.reason)
		}
		if strings.Contains(b, secret) {
			t.Errorf("%s: the answer holds the secret", name)
		}
	}
}
