package verify

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Secrets of the hostile-input tests and the fuzz target; distinctive, so that
// finding one in an error message cannot be a coincidence.
var (
	fuzzNow     = time.Unix(1_780_000_000, 0)
	fuzzSecret  = "fuzz-secret-7d1e4b2a"
	fuzzWhsec   = "whsec_" + base64.StdEncoding.EncodeToString([]byte("fuzz-standard-webhooks-key"))
	fuzzURL     = "https://hooks.example.com/hooks/sms?x=1"
	fuzzSecrets = []string{fuzzSecret, fuzzWhsec, "ZnV6ei1zdGFuZGFyZC13ZWJob29rcy1rZXk", "fuzz-standard-webhooks-key"}
)

// allVerifiers has one verifier per scheme, configured with the fuzz secrets.
func allVerifiers(t testing.TB) []Verifier {
	var vs []Verifier
	for _, s := range Schemes() {
		secrets, opts := []string{"fuzz-rotated-out", fuzzSecret}, Options{}
		switch s {
		case StandardWebhooks:
			secrets = []string{fuzzWhsec}
		case BasicAuth:
			secrets = []string{"fuzz-user", fuzzSecret}
		case HMAC:
			opts = Options{Header: "X-Signature", Algorithm: "sha1", Encoding: "base64", Prefix: "sha1="}
		}
		v, err := New(s, secrets, opts)
		if err != nil {
			t.Fatalf("New(%s): %v", s, err)
		}
		vs = append(vs, v)
	}
	return vs
}

// hostileRequest puts value in every header any scheme reads.
func hostileRequest(value, timestamp string, body []byte) Request {
	h := http.Header{}
	for _, name := range []string{"X-Hub-Signature-256", "Stripe-Signature", "Webhook-Signature",
		"X-Shopify-Hmac-Sha256", "X-Slack-Signature", "X-Twilio-Signature", "X-Signature", "Authorization"} {
		h.Set(name, value)
	}
	h.Set("Webhook-Id", "msg_fuzz")
	h.Set("Webhook-Timestamp", timestamp)
	h.Set("X-Slack-Request-Timestamp", timestamp)
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	return Request{Method: "POST", URL: fuzzURL, Header: h, Body: body, Now: fuzzNow}
}

func TestHostileInputIsRefusedBeforeAnyHashing(t *testing.T) {
	now := strconv.FormatInt(fuzzNow.Unix(), 10)
	body := []byte("a=1&b=2")
	huge := strings.Repeat("A", 1<<20)
	sig64 := strings.Repeat("ab", 32)
	b64 := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, c := range []struct {
		name, value, timestamp string
	}{
		{"1 MiB header", huge, now},
		{"1 MiB timestamp", "v0=" + sig64, huge},
		{"NUL and binary bytes", "\x00\xff\xfe=\x00,v1=\x01", now},
		{"Stripe: more entries than any rotation", "t=" + now + strings.Repeat(",v1=a", 40), now},
		{"Standard Webhooks: more signatures than any rotation", strings.TrimSpace(strings.Repeat("v1,"+b64+" ", 20)), now},
		{"timestamp with 40 digits", "t=" + strings.Repeat("9", 40) + ",v1=" + sig64, strings.Repeat("9", 40)},
		{"timestamp far in the past", "t=1,v1=" + sig64, "1"},
		{"negative timestamp", "t=-1,v1=" + sig64, "-1"},
		{"empty", " ", " "},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, v := range allVerifiers(t) {
				before := macsComputed.Load()
				err := v.Verify(hostileRequest(c.value, c.timestamp, body))
				if !errors.Is(err, ErrUnverified) {
					t.Fatalf("%s: %v, want a refusal", v.Scheme(), err)
				}
				// Twilio's header is checked first and never matches these;
				// every other scheme must refuse on shape or time alone.
				if n := macsComputed.Load() - before; n != 0 {
					t.Errorf("%s computed %d MACs before refusing (%v)", v.Scheme(), n, err)
				}
				if c.value == huge && !strings.Contains(err.Error(), "longer than 4096 bytes") {
					t.Errorf("%s: %v, want the header refused for its length before parsing", v.Scheme(), err)
				}
				if len(err.Error()) > 200 {
					t.Errorf("%s: error of %d bytes echoes the input: %.80s…", v.Scheme(), len(err.Error()), err)
				}
			}
		})
	}
}

// The cost of a request is one MAC per configured secret (per URL variant for
// Twilio), however many signatures it carries.
func TestCostDoesNotGrowWithSignatures(t *testing.T) {
	now := strconv.FormatInt(fuzzNow.Unix(), 10)
	stripe := "t=" + now + strings.Repeat(",v1="+strings.Repeat("ab", 32), maxSignatures)
	standard := strings.TrimSpace(strings.Repeat("v1,"+base64.StdEncoding.EncodeToString(make([]byte, 32))+" ", maxSignatures))
	for _, c := range []struct {
		scheme, value string
		macs          int64
	}{
		{Stripe, stripe, 2},
		{StandardWebhooks, standard, 1},
	} {
		for _, v := range allVerifiers(t) {
			if v.Scheme() != c.scheme {
				continue
			}
			before := macsComputed.Load()
			err := v.Verify(hostileRequest(c.value, now, []byte("{}")))
			var e *Error
			if !errors.As(err, &e) || e.Reason != ReasonMismatch {
				t.Fatalf("%s: %v, want a mismatch", c.scheme, err)
			}
			if n := macsComputed.Load() - before; n != c.macs {
				t.Errorf("%s with %d signatures computed %d MACs, want %d", c.scheme, maxSignatures, n, c.macs)
			}
		}
	}
}

// fuzzSign returns the request a provider holding the fuzz secrets would send.
func fuzzSign(t testing.TB, scheme string, body []byte) (Request, bool) {
	ts := strconv.FormatInt(fuzzNow.Unix(), 10)
	h := http.Header{}
	switch scheme {
	case GitHub:
		h.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(hmacOf(sha256.New, fuzzSecret, string(body))))
	case Shopify:
		h.Set("X-Shopify-Hmac-Sha256", base64.StdEncoding.EncodeToString(hmacOf(sha256.New, fuzzSecret, string(body))))
	case HMAC:
		h.Set("X-Signature", "sha1="+base64.StdEncoding.EncodeToString(hmacOf(sha1.New, fuzzSecret, string(body))))
	case Stripe:
		h.Set("Stripe-Signature", stripeHeader(fuzzSecret, fuzzNow.Unix(), string(body)))
	case Slack:
		h.Set("X-Slack-Request-Timestamp", ts)
		h.Set("X-Slack-Signature", "v0="+hex.EncodeToString(hmacOf(sha256.New, fuzzSecret, "v0:"+ts+":"+string(body))))
	case StandardWebhooks:
		key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(fuzzWhsec, "whsec_"))
		h.Set("Webhook-Id", "msg_fuzz")
		h.Set("Webhook-Timestamp", ts)
		h.Set("Webhook-Signature", "v1,"+base64.StdEncoding.EncodeToString(hmacOf(sha256.New, string(key), "msg_fuzz."+ts+"."+string(body))))
	case Twilio:
		params, err := twilioParams(body)
		if err != nil {
			return Request{}, false // not a form: Twilio would not send it so
		}
		h.Set("Content-Type", "application/x-www-form-urlencoded")
		h.Set("X-Twilio-Signature", base64.StdEncoding.EncodeToString(hmacOf(sha1.New, fuzzSecret, fuzzURL+params)))
	case BasicAuth:
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("fuzz-user:"+fuzzSecret)))
	case Bearer:
		h.Set("Authorization", "Bearer "+fuzzSecret)
	default:
		t.Fatalf("no signer for %s", scheme)
	}
	return Request{Method: "POST", URL: fuzzURL, Header: h, Body: body, Now: fuzzNow}, true
}

// FuzzVerify: a request signed as the provider signs is accepted and the same
// request with its body changed is refused; anything else, however hostile,
// is refused with an *Error wrapping ErrUnverified, without a panic, and
// without a secret in the message.
func FuzzVerify(f *testing.F) {
	now := strconv.FormatInt(fuzzNow.Unix(), 10)
	f.Add(uint8(0), false, "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", now, []byte("Hello, World!"))
	f.Add(uint8(1), false, "t="+now+",v1=zz,v1="+strings.Repeat("0", 64), now, []byte(`{"id":"evt_1"}`))
	f.Add(uint8(2), false, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1a,xyz", "1614265330", []byte(`{"test": 2432232314}`))
	f.Add(uint8(4), false, "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503", "1531420618", []byte("token=x"))
	f.Add(uint8(5), false, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", now, []byte("CallSid=CA1&Digits=1234&Digits=1234"))
	f.Add(uint8(7), false, "Basic Zm9vOmJhcg==", now, []byte{})
	f.Add(uint8(8), false, "Bearer not-the-token", now, []byte{})
	f.Add(uint8(5), true, "", now, []byte("a=1&a=1&b=%20&c"))
	f.Add(uint8(2), true, "", now, []byte{0, 1, 2})
	vs := allVerifiers(f)
	f.Fuzz(func(t *testing.T, pick uint8, signed bool, value, timestamp string, body []byte) {
		v := vs[int(pick)%len(vs)]
		if signed {
			req, ok := fuzzSign(t, v.Scheme(), body)
			if !ok {
				return
			}
			if err := v.Verify(req); err != nil {
				t.Fatalf("%s refused what the provider signs: %v", v.Scheme(), err)
			}
			if v.Scheme() == BasicAuth || v.Scheme() == Bearer {
				return // credentials do not cover the body
			}
			req.Body = append(append([]byte{}, body...), 'x')
			if v.Scheme() == Twilio {
				// Twilio signs the parsed, de-duplicated parameters, not the
				// bytes: appending "x" to "…&x&" repeats a field and changes
				// nothing signed (corpus twilio-repeated-field-is-not-signed).
				before, _ := twilioParams(body)
				after, err := twilioParams(req.Body)
				if err == nil && after == before {
					return
				}
			}
			if err := v.Verify(req); !errors.Is(err, ErrUnverified) {
				t.Fatalf("%s accepted a changed body: %v", v.Scheme(), err)
			}
			return
		}
		err := v.Verify(hostileRequest(value, timestamp, body))
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, ErrUnverified) || e.Scheme != v.Scheme() {
			t.Fatalf("%s: %v, want an *Error refusal", v.Scheme(), err)
		}
		for _, s := range fuzzSecrets {
			if strings.Contains(err.Error(), s) {
				t.Fatalf("%s: error %q contains a secret", v.Scheme(), err)
			}
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	body := []byte(strings.Repeat("x", 1024))
	for _, v := range allVerifiers(b) {
		req, ok := fuzzSign(b, v.Scheme(), body)
		if !ok {
			req, _ = fuzzSign(b, v.Scheme(), []byte("a=1&b=2"))
		}
		b.Run(v.Scheme()+"/signed-1KiB", func(b *testing.B) {
			for b.Loop() {
				if err := v.Verify(req); err != nil {
					b.Fatal(err)
				}
			}
		})
		hostile := hostileRequest(strings.Repeat("A", 1<<20), strings.Repeat("9", 1<<20), body)
		b.Run(v.Scheme()+"/1MiB-header", func(b *testing.B) {
			for b.Loop() {
				if err := v.Verify(hostile); err == nil {
					b.Fatal("accepted")
				}
			}
		})
	}
}
