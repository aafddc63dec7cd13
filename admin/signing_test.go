package admin_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// verifyStandardWebhooks checks a delivery as a receiver does, from the
// Standard Webhooks specification: one v1 signature of "id.timestamp.body"
// by the secret's key.
func verifyStandardWebhooks(secret string, h http.Header, body string) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(h.Get("Webhook-Id") + "." + h.Get("Webhook-Timestamp") + "." + body))
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Split(h.Get("Webhook-Signature"), " ") {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return true
		}
	}
	return false
}

// TestSigningSecretIsGeneratedShownOnceAndWriteOnly: "generate" makes a
// secret that only the answer to that request shows; every other answer
// masks it and the headers; a rotation keeps the old one signing; and the
// deliveries verify with the secrets shown.
func TestSigningSecretIsGeneratedShownOnceAndWriteOnly(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t)
	w := e.createWebhook("signed")
	tg := e.addTarget(w.ID, map[string]any{"name": "crm", "type": "http", "url": rc.URL, "options": map[string]any{
		"signing_secret": "generate", "headers": map[string]string{"Authorization": "Bearer receiver-token"},
		"headers_add": map[string][]string{"X-Key": {"added-secret-value"}}, "headers_remove": []string{"Cookie"},
	}})
	first := tg.Options.SigningSecret
	if _, err := storage.DecodeSigningSecret(first); err != nil {
		t.Fatalf("generated secret %q: %v", first, err)
	}
	if tg.Options.Headers["Authorization"] != storage.RedactedValue || tg.Options.HeadersAdd["X-Key"][0] != storage.RedactedValue ||
		len(tg.Options.HeadersRemove) != 1 {
		t.Errorf("created target's options = %+v", tg.Options)
	}
	secrets := []string{first, "receiver-token", "added-secret-value"}
	base := "/webhooker/webhooks/" + w.ID
	// Every later answer masks them.
	noSecrets := func(what string, resp response) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(resp.String(), strings.TrimPrefix(s, "whsec_")) {
				t.Errorf("%s shows a secret: %s", what, resp)
			}
		}
	}
	var got webhookJSON
	noSecrets("GET webhook", e.must(http.StatusOK, "GET", base, nil, &got))
	if o := got.Targets[0].Options; o.SigningSecret != storage.RedactedValue || o.HeadersAdd["X-Key"][0] != storage.RedactedValue {
		t.Errorf("GET: options %+v", o)
	}
	noSecrets("list", e.must(http.StatusOK, "GET", "/webhooker/webhooks", nil, nil))
	var patched targetJSON
	noSecrets("PATCH timeout", e.must(http.StatusOK, "PATCH", base+"/targets/"+tg.ID,
		map[string]any{"options": map[string]any{"timeout": "5s", "signing_secret": storage.RedactedValue}}, &patched))
	if patched.Options.SigningSecret != storage.RedactedValue {
		t.Errorf("PATCH kept no secret: %+v", patched.Options)
	}

	body := `{"n":1}`
	e.ingest(w.Entrypoints[0].Key, incoming{body: []byte(body), contentType: "application/json"})
	eventually(t, "the signed delivery", func() (bool, string) { return rc.count(body) == 1, fmt.Sprint(rc.received()) })
	h := rc.received()[0].header
	if !verifyStandardWebhooks(first, h, body) || h.Get("Authorization") != "Bearer receiver-token" || h.Get("X-Key") != "added-secret-value" {
		t.Errorf("delivery headers %v", h)
	}

	// Rotation: a new generated secret, shown once; the old one signs
	// beside it for 24 hours.
	var rotated targetJSON
	e.must(http.StatusOK, "PATCH", base+"/targets/"+tg.ID, map[string]any{"options": map[string]any{"signing_secret": "generate"}}, &rotated)
	second := rotated.Options.SigningSecret
	if _, err := storage.DecodeSigningSecret(second); err != nil || second == first {
		t.Fatalf("rotated secret %q: %v", second, err)
	}
	if o := rotated.Options; o.SigningSecretPrevious != storage.RedactedValue ||
		o.SigningSecretPreviousUntil.Sub(time.Now()) < 23*time.Hour || o.SigningSecretPreviousUntil.Sub(time.Now()) > 24*time.Hour {
		t.Errorf("rotated options %+v: want the previous secret masked, with 24 h of grace", o)
	}
	// The mask still works, and headers left out are still there.
	secrets = append(secrets, second)
	noSecrets("GET after rotation", e.must(http.StatusOK, "GET", base, nil, &got))
	body = `{"n":2}`
	e.ingest(w.Entrypoints[0].Key, incoming{body: []byte(body), contentType: "application/json"})
	eventually(t, "the delivery after rotation", func() (bool, string) { return rc.count(body) == 1, fmt.Sprint(rc.received()) })
	h = rc.received()[1].header
	if !verifyStandardWebhooks(first, h, body) || !verifyStandardWebhooks(second, h, body) ||
		h.Get("Authorization") != "Bearer receiver-token" {
		t.Errorf("after rotation: headers %v", h)
	}

	// A malformed secret is refused without being quoted.
	resp := e.call("PATCH", base+"/targets/"+tg.ID, map[string]any{"options": map[string]any{"signing_secret": "whsec_c2hvcnQtYnV0LXNlY3JldA=="}})
	if resp.status != http.StatusBadRequest || strings.Contains(resp.String(), "c2hvcnQtYnV0LXNlY3JldA") {
		t.Errorf("malformed secret: %d %s", resp.status, resp)
	}
	// "none" removes the signing.
	e.must(http.StatusOK, "PATCH", base+"/targets/"+tg.ID, map[string]any{"options": map[string]any{"signing_secret": "none"}}, &patched)
	if patched.Options.SigningSecret != "" || patched.Options.SigningSecretPrevious != "" {
		t.Errorf("after none: %+v", patched.Options)
	}
}
