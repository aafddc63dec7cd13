package caddymodule_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

const (
	testSecret     = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // 24 bytes
	testSecretPrev = "whsec_bm90LXRoZS1jdXJyZW50LWtleS1idXQtb2xk"
)

// TestCaddyfileSigningAndHeaderUp: the target options of issue 11 adapt to
// the options of the JSON config and the API.
func TestCaddyfileSigningAndHeaderUp(t *testing.T) {
	raw, err := adaptWebhooker(t, "{\n\twebhooker {\n\t\twebhook a {\n"+
		"\t\t\ttarget t http https://example.com/ {\n"+
		"\t\t\t\tsigning_secret "+testSecret+"\n"+
		"\t\t\t\tsigning_secret_previous "+testSecretPrev+" until 2027-01-31T12:00:00Z\n"+
		"\t\t\t\theader_up -Authorization\n"+
		"\t\t\t\theader_up -Cookie\n"+
		"\t\t\t\theader_up +X-Tag one\n"+
		"\t\t\t\theader_up +X-Tag two\n"+
		"\t\t\t\theader_up X-Env prod\n"+
		"\t\t\t\theader X-Other o\n"+
		"\t\t\t}\n\t\t}\n\t}\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Webhooks []struct {
			Targets []struct {
				Options storage.TargetOptions `json:"options"`
			} `json:"targets"`
		} `json:"webhooks"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	o := cfg.Webhooks[0].Targets[0].Options
	until := time.Date(2027, 1, 31, 12, 0, 0, 0, time.UTC)
	if o.SigningSecret != testSecret || o.SigningSecretPrevious != testSecretPrev || !o.SigningSecretPreviousUntil.Equal(until) ||
		strings.Join(o.HeadersRemove, ",") != "Authorization,Cookie" || strings.Join(o.HeadersAdd["X-Tag"], ",") != "one,two" ||
		o.Headers["X-Env"] != "prod" || o.Headers["X-Other"] != "o" {
		t.Errorf("adapted options %+v (from %s)", o, raw)
	}
}

func TestCaddyfileSigningAndHeaderUpMistakes(t *testing.T) {
	target := func(lines ...string) string {
		return "webhook a {\n\ttarget t http https://example.com/ {\n\t\t" + strings.Join(lines, "\n\t\t") + "\n\t}\n}"
	}
	for _, c := range []struct {
		name, block string
		line        int
		want        string
	}{
		{"secret without prefix", target("signing_secret MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), 5, `signing_secret: want "whsec_"`},
		{"short secret", target("signing_secret whsec_c2hvcnQ="), 5, "signing_secret: a key of 5 bytes: want 24 to 64"},
		{"secret twice", target("signing_secret "+testSecret, "signing_secret "+testSecret), 6, "signing_secret is set twice"},
		{"secret without value", target("signing_secret"), 5, "signing_secret: want whsec_<base64>"},
		{"previous alone", target("signing_secret_previous " + testSecretPrev), 5, "signing_secret_previous without a signing_secret"},
		{"previous with a bad until", target("signing_secret "+testSecret, "signing_secret_previous "+testSecretPrev+" until tomorrow"), 6,
			`until "tomorrow": want an RFC 3339 time`},
		{"previous with a word not until", target("signing_secret "+testSecret, "signing_secret_previous "+testSecretPrev+" till 2027-01-01T00:00:00Z"), 6,
			"want whsec_<base64> [until <RFC 3339 time>]"},
		{"header_up Host", target("header_up Host evil.example"), 5, "header Host cannot be configured"},
		{"header_up removes the hop marker", target("header_up -Webhooker-Via"), 5, "header Webhooker-Via cannot be configured"},
		{"header_up adds a hop-by-hop header", target("header_up +Connection close"), 5, "a hop-by-hop header"},
		{"header_up removal with a value", target("header_up -Cookie x"), 5, "a removal takes no value"},
		{"header_up without a value", target("header_up X-Env"), 5, "header_up X-Env: want a value"},
		{"header_up replace form", target("header_up X-Env a b"), 5, "header_up: want -<field>"},
		{"header_up set and add", target("header_up X-Env a", "header_up +X-Env b"), 6, "both set (headers) and added"},
		{"header and header_up set", target("header X-Env a", "header_up X-Env b"), 6, "header X-Env is set twice"},
		{"header_up removes twice", target("header_up -Cookie", "header_up -cookie"), 6, "Cookie is given twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := adaptWebhooker(t, "{\n\twebhooker {\n"+c.block+"\n\t}\n}\n")
			if err == nil {
				t.Fatalf("adapted without an error")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
			if at := fmt.Sprintf("Caddyfile:%d", c.line); !strings.HasSuffix(err.Error(), ", at "+at) {
				t.Errorf("error %q is not at %s", err, at)
			}
			if strings.Contains(err.Error(), "c2hvcnQ") || strings.Contains(err.Error(), "MfKQ9r8GKYqrTwjU") {
				t.Errorf("the error quotes a secret: %v", err)
			}
		})
	}
}
