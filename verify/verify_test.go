package verify

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// case_ is one request against one verifier, and what must come of it.
type case_ struct {
	name   string
	req    Request
	reason Reason // "" = accepted
}

// run checks every case, and that a refusal wraps ErrUnverified, names the
// scheme and the reason, and holds none of the forbidden strings (secrets,
// expected signatures).
func run(t *testing.T, v Verifier, cases []case_, forbidden ...string) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := v.Verify(c.req)
			checkOutcome(t, v.Scheme(), err, c.reason, forbidden...)
		})
	}
}

func checkOutcome(t *testing.T, scheme string, err error, want Reason, forbidden ...string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("accepted, want refused (%s)", want)
	}
	if !errors.Is(err, ErrUnverified) {
		t.Fatalf("error %v does not wrap ErrUnverified", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Reason != want || e.Scheme != scheme {
		t.Fatalf("error %v: want scheme %s, reason %s", err, scheme, want)
	}
	if !strings.HasPrefix(err.Error(), "verify "+scheme+": "+string(want)) {
		t.Fatalf("error text %q does not name the scheme and the reason", err)
	}
	for _, f := range forbidden {
		if f != "" && strings.Contains(err.Error(), f) {
			t.Fatalf("error %q contains %q", err, f)
		}
	}
}

func mustNew(t *testing.T, scheme string, secrets []string, opts Options) Verifier {
	t.Helper()
	v, err := New(scheme, secrets, opts)
	if err != nil {
		t.Fatalf("New(%s): %v", scheme, err)
	}
	if v.Scheme() != scheme {
		t.Fatalf("Scheme() = %q, want %q", v.Scheme(), scheme)
	}
	return v
}

func headers(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func hmacOf(newHash func() hash.Hash, key string, msg string) []byte {
	m := hmac.New(newHash, []byte(key))
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// GitHub's documented example ("Validating webhook deliveries").
func TestGitHubDocumentedVector(t *testing.T) {
	const secret = "It's a Secret to Everybody"
	const sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	v := mustNew(t, GitHub, []string{secret}, Options{})
	req := func(body, signature string) Request {
		return Request{Method: "POST", Header: headers("X-Hub-Signature-256", signature), Body: []byte(body)}
	}
	run(t, v, []case_{
		{"documented vector", req("Hello, World!", sig), ""},
		{"upper-case hex and prefix", req("Hello, World!", strings.ToUpper(sig)), ""},
		{"one body byte changed", req("Hello, World?", sig), ReasonMismatch},
		{"one signature digit changed", req("Hello, World!", sig[:len(sig)-1]+"8"), ReasonMismatch},
		{"no header", Request{Body: []byte("Hello, World!")}, ReasonMissing},
		{"sha1 header only", Request{Header: headers("X-Hub-Signature", "sha1=01157"), Body: []byte("x")}, ReasonMissing},
		{"no prefix", req("Hello, World!", sig[len("sha256="):]), ReasonMalformed},
		{"not hex", req("Hello, World!", "sha256="+strings.Repeat("zz", 32)), ReasonMalformed},
		{"short", req("Hello, World!", "sha256=7571"), ReasonMalformed},
		{"sent twice", Request{Header: headers("X-Hub-Signature-256", sig, "X-Hub-Signature-256", sig), Body: []byte("Hello, World!")}, ReasonMalformed},
	}, secret, sig[len("sha256="):])

	rotated := mustNew(t, GitHub, []string{"old secret", secret}, Options{})
	checkOutcome(t, GitHub, rotated.Verify(req("Hello, World!", sig)), "")
}

// stripeHeader builds Stripe-Signature the way Stripe documents it.
func stripeHeader(secret string, ts int64, body string, extra ...string) string {
	t := strconv.FormatInt(ts, 10)
	h := "t=" + t + ",v1=" + hex.EncodeToString(hmacOf(sha256.New, secret, t+"."+body))
	for _, e := range extra {
		h += "," + e
	}
	return h
}

func TestStripe(t *testing.T) {
	const secret, second = "whsec_test_secret_one", "whsec_test_secret_two"
	const body = `{"id":"evt_1","object":"event","type":"payment_intent.succeeded"}`
	now := time.Unix(1_780_000_000, 0)
	v := mustNew(t, Stripe, []string{secret}, Options{})
	both := mustNew(t, Stripe, []string{secret, second}, Options{})
	req := func(h string, at time.Time) Request {
		return Request{Method: "POST", Header: headers("Stripe-Signature", h), Body: []byte(body), Now: at}
	}
	good := stripeHeader(secret, now.Unix(), body)
	expected := good[strings.Index(good, "v1=")+3:]
	run(t, v, []case_{
		{"signed now", req(good, now), ""},
		{"4 minutes old", req(good, now.Add(4*time.Minute)), ""},
		{"10 minutes old", req(stripeHeader(secret, now.Add(-10*time.Minute).Unix(), body), now), ReasonTooOld},
		{"10 minutes ahead", req(stripeHeader(secret, now.Add(10*time.Minute).Unix(), body), now), ReasonTooNew},
		{"wrong secret", req(stripeHeader("whsec_wrong", now.Unix(), body), now), ReasonMismatch},
		{"second secret only", req(stripeHeader(second, now.Unix(), body), now), ReasonMismatch},
		{"body changed", Request{Header: headers("Stripe-Signature", good), Body: []byte(body + " "), Now: now}, ReasonMismatch},
		{"timestamp changed", req(strings.Replace(good, "t=1780000000", "t=1780000001", 1), now), ReasonMismatch},
		{"a wrong v1 before the right one", req("t=1780000000,v1="+strings.Repeat("0", 64)+","+good[len("t=1780000000,"):], now), ""},
		{"legacy v0 alongside", req(good+",v0="+strings.Repeat("a", 64), now), ""},
		{"no t", req("v1="+expected, now), ReasonMalformed},
		{"no v1", req("t=1780000000,v0="+expected, now), ReasonMalformed},
		{"two t", req("t=1,"+good, now), ReasonMalformed},
		{"t not a number", req("t=-5,v1="+expected, now), ReasonMalformed},
		{"entry without =", req(good+",junk", now), ReasonMalformed},
		{"missing", Request{Body: []byte(body), Now: now}, ReasonMissing},
	}, secret, second, expected)

	// Rotation: Stripe signs with both secrets while one is rolled; either configured secret passes.
	checkOutcome(t, Stripe, both.Verify(req(stripeHeader(second, now.Unix(), body), now)), "")
	checkOutcome(t, Stripe, both.Verify(req(stripeHeader(secret, now.Unix(), body), now)), "")

	// Tolerance is configurable: 15 minutes accepts what 5 refuses.
	wide := mustNew(t, Stripe, []string{secret}, Options{Tolerance: 15 * time.Minute})
	checkOutcome(t, Stripe, wide.Verify(req(stripeHeader(secret, now.Add(-10*time.Minute).Unix(), body), now)), "")
}

// The Standard Webhooks specification's test vector (also in Svix's docs).
func TestStandardWebhooksSpecVector(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	const id, ts, body = "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", `{"test": 2432232314}`
	const sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	at := time.Unix(1614265330, 0)
	v := mustNew(t, StandardWebhooks, []string{secret}, Options{})
	req := func(signature string, now time.Time) Request {
		return Request{Method: "POST", Body: []byte(body), Now: now,
			Header: headers("webhook-id", id, "webhook-timestamp", ts, "webhook-signature", signature)}
	}
	other := "v1," + base64.StdEncoding.EncodeToString(make([]byte, 32))
	run(t, v, []case_{
		{"spec vector at its time", req(sig, at), ""},
		{"spec vector 10 minutes later", req(sig, at.Add(10*time.Minute)), ReasonTooOld},
		{"spec vector 10 minutes earlier", req(sig, at.Add(-10*time.Minute)), ReasonTooNew},
		{"among other signatures", req("v1a,abc "+other+" "+sig, at), ""},
		{"body changed", Request{Body: []byte(`{"test": 2432232315}`), Now: at,
			Header: headers("webhook-id", id, "webhook-timestamp", ts, "webhook-signature", sig)}, ReasonMismatch},
		{"id changed", Request{Body: []byte(body), Now: at,
			Header: headers("webhook-id", "msg_other", "webhook-timestamp", ts, "webhook-signature", sig)}, ReasonMismatch},
		{"only other versions", req("v1a,"+sig[3:], at), ReasonMalformed},
		{"wrong signature", req(other, at), ReasonMismatch},
		{"svix-named headers", Request{Body: []byte(body), Now: at,
			Header: headers("svix-id", id, "svix-timestamp", ts, "svix-signature", sig)}, ""},
		{"no id", Request{Body: []byte(body), Now: at, Header: headers("webhook-timestamp", ts, "webhook-signature", sig)}, ReasonMissing},
		{"no timestamp", Request{Body: []byte(body), Now: at, Header: headers("webhook-id", id, "webhook-signature", sig)}, ReasonMissing},
	}, secret, strings.TrimPrefix(secret, "whsec_"), sig[3:])

	// The reference libraries accept the key without its prefix, and so do we.
	bare := mustNew(t, StandardWebhooks, []string{"whsec_" + base64.StdEncoding.EncodeToString([]byte("another key of 24 bytes!")), "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, Options{})
	checkOutcome(t, StandardWebhooks, bare.Verify(req(sig, at)), "")
}

// Slack's documented example ("Verifying requests from Slack").
func TestSlackDocumentedVector(t *testing.T) {
	const secret = "8f742231b10e8888abcd99yyyzzz85a5"
	const ts = "1531420618"
	const body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
	const sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
	at := time.Unix(1531420618, 0)
	v := mustNew(t, Slack, []string{secret}, Options{})
	req := func(timestamp, signature, b string, now time.Time) Request {
		return Request{Method: "POST", Body: []byte(b), Now: now,
			Header: headers("X-Slack-Request-Timestamp", timestamp, "X-Slack-Signature", signature)}
	}
	run(t, v, []case_{
		{"documented example", req(ts, sig, body, at), ""},
		{"10 minutes later", req(ts, sig, body, at.Add(10*time.Minute)), ReasonTooOld},
		{"body changed", req(ts, sig, body+"&x=1", at), ReasonMismatch},
		{"timestamp changed", req("1531420619", sig, body, at), ReasonMismatch},
		{"no v0=", req(ts, sig[3:], body, at), ReasonMalformed},
		{"timestamp not a number", req("15314206l8", sig, body, at), ReasonMalformed},
		{"no timestamp", Request{Body: []byte(body), Now: at, Header: headers("X-Slack-Signature", sig)}, ReasonMissing},
	}, secret, sig[3:])
}

// Shopify documents the scheme but publishes no vector: this one is made here,
// with crypto/hmac directly, from the documented construction.
func TestShopify(t *testing.T) {
	const secret = "shpss_made_up_client_secret"
	const body = `{"id":820982911946154508,"email":"jon@example.com"}`
	sig := base64.StdEncoding.EncodeToString(hmacOf(sha256.New, secret, body))
	v := mustNew(t, Shopify, []string{secret}, Options{})
	req := func(signature, b string) Request {
		return Request{Method: "POST", Body: []byte(b), Header: headers("X-Shopify-Hmac-Sha256", signature)}
	}
	run(t, v, []case_{
		{"signed", req(sig, body), ""},
		{"body changed", req(sig, body+" "), ReasonMismatch},
		{"hex instead of base64", req(hex.EncodeToString(hmacOf(sha256.New, secret, body)), body), ReasonMalformed},
		{"garbage", req("!!!!", body), ReasonMalformed},
	}, secret, sig)
}

// Twilio's published RequestValidator vectors (twilio-php, twilio-csharp,
// twilio-python tests; the first is the example of Twilio's security docs):
// auth token 12345.
func TestTwilioDocumentedVectors(t *testing.T) {
	const token = "12345"
	const base = "https://mycompany.com/myapp.php?foo=1&bar=2"
	form := url.Values{
		"CallSid": {"CA1234567890ABCDE"}, "Caller": {"+14158675309"}, "Digits": {"1234"},
		"From": {"+14158675309"}, "To": {"+18005551212"},
	}.Encode()
	dups := "Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234"
	const jsonBody = `{"property": "value", "boolean": true}`
	const bodyHash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
	v := mustNew(t, Twilio, []string{token}, Options{})
	post := func(u, sig, contentType, body string) Request {
		return Request{Method: "POST", URL: u, Body: []byte(body),
			Header: headers("X-Twilio-Signature", sig, "Content-Type", contentType)}
	}
	const formType = "application/x-www-form-urlencoded"
	run(t, v, []case_{
		{"docs example", post(base, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", formType, form), ""},
		{"form content type with charset", post(base, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", formType+"; charset=utf-8", form), ""},
		{"repeated values, de-duplicated", post(base, "IK+Dwps556ElfBT0I3Rgjkr1wJU=", formType, dups), ""},
		{"signed without the port it was sent to", post("https://mycompany.com:1234/myapp.php?foo=1&bar=2", "RSOYDt4T1cUTdK1PDd93/VVr8B8=", formType, form), ""},
		{"http with its port", post("http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=", formType, form), ""},
		{"signed with https default port", post(base, "kvajT1Ptam85bY51eRf/AJRuM3w=", formType, form), ""},
		{"signed with http default port", post("http://mycompany.com/myapp.php?foo=1&bar=2", "0ZXoZLH/DfblKGATFgpif+LLRf4=", formType, form), ""},
		{"mixed-case host kept", post("https://MyCompany.com/myapp.php?foo=1&bar=2", "g9IN/x4Cft2g517EjYvEvM/W7LU=", formType, form), ""},
		{"credentials kept", post("https://user:pass@mycompany.com/myapp.php?foo=1&bar=2", "CukzLTc1tT5dXEDIHm/tKBanW10=", formType, form), ""},
		{"credentials and default port", post("https://user:pass@mycompany.com/myapp.php?foo=1&bar=2", "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI=", formType, form), ""},
		{"JSON body with bodySHA256", post(base+"&bodySHA256="+bodyHash, "a9nBmqA0ju/hNViExpshrM61xv4=", "application/json", jsonBody), ""},
		{"only bodySHA256 in the query", post("https://mycompany.com/myapp.php?bodySHA256="+bodyHash, "y77kIzt2vzLz71DgmJGsen2scGs=", "application/json", jsonBody), ""},
		{"JSON body changed", post(base+"&bodySHA256="+bodyHash, "a9nBmqA0ju/hNViExpshrM61xv4=", "application/json", jsonBody+" "), ReasonMismatch},
		{"JSON body without bodySHA256", post(base, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", "application/json", jsonBody), ReasonMalformed},
		{"mixed-case host, signature of lower case", post("https://MyCompany.com/myapp.php?foo=1&bar=2", "RSOYDt4T1cUTdK1PDd93/VVr8B8=", formType, form), ReasonMismatch},
		{"param changed", post(base, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", formType, strings.Replace(form, "1234", "9999", 1)), ReasonMismatch},
		{"param added", post(base, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", formType, form+"&x=1"), ReasonMismatch},
		{"query changed", post(base+"&extra=1", "RSOYDt4T1cUTdK1PDd93/VVr8B8=", formType, form), ReasonMismatch},
		{"not base64", post(base, "NOTRSOYDt4T1cUTdK1PDd93/VVr8B8=", formType, form), ReasonMalformed},
		{"relative URL", post("/myapp.php?foo=1&bar=2", "RSOYDt4T1cUTdK1PDd93/VVr8B8=", formType, form), ReasonMalformed},
		{"bad form", post(base, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", formType, "a=%zz"), ReasonMalformed},
		{"no signature", Request{Method: "POST", URL: base, Body: []byte(form)}, ReasonMissing},
	}, token)

	// A body that is neither a form nor covered by bodySHA256 is signed by
	// nothing: a signature of the bare URL (one Twilio gave for an empty form)
	// must not carry a body of the sender's choosing.
	urlOnly := base64.StdEncoding.EncodeToString(hmacOf(sha1.New, token, base))
	checkOutcome(t, Twilio, v.Verify(post(base, urlOnly, formType, "")), "")
	checkOutcome(t, Twilio, v.Verify(post(base, urlOnly, "application/json", `{"forged":true}`)), ReasonMalformed, token)

	// Twilio's primary and secondary auth tokens during a promotion.
	both := mustNew(t, Twilio, []string{"secondary-token", token}, Options{})
	checkOutcome(t, Twilio, both.Verify(post(base, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", formType, form)), "")

	// Without the URL the caller gave too little: not a 401 but the caller's fault.
	if err := v.Verify(Request{Method: "POST", Header: headers("X-Twilio-Signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")}); !errors.Is(err, ErrNoURL) || errors.Is(err, ErrUnverified) {
		t.Fatalf("no URL: %v, want ErrNoURL and not ErrUnverified", err)
	}
}

func TestHMACVariants(t *testing.T) {
	const secret = "generic-shared-secret"
	const body = `{"event":"build.finished"}`
	for _, alg := range []struct {
		name    string
		newHash func() hash.Hash
	}{{"sha1", sha1.New}, {"sha256", sha256.New}, {"sha512", sha512.New}} {
		for _, enc := range []string{"hex", "base64"} {
			for _, prefix := range []string{"", alg.name + "="} {
				t.Run(fmt.Sprintf("%s/%s/%q", alg.name, enc, prefix), func(t *testing.T) {
					sum := hmacOf(alg.newHash, secret, body)
					encoded := hex.EncodeToString(sum)
					if enc == "base64" {
						encoded = base64.StdEncoding.EncodeToString(sum)
					}
					v := mustNew(t, HMAC, []string{"rotated-out", secret}, Options{Header: "X-Signature", Algorithm: alg.name, Encoding: enc, Prefix: prefix})
					req := func(value, b string) Request {
						return Request{Method: "POST", Body: []byte(b), Header: headers("x-signature", value)}
					}
					cases := []case_{
						{"signed", req(prefix+encoded, body), ""},
						{"body changed", req(prefix+encoded, body+"x"), ReasonMismatch},
						{"other header", Request{Body: []byte(body), Header: headers("X-Hub-Signature", prefix+encoded)}, ReasonMissing},
					}
					if prefix != "" {
						cases = append(cases, case_{"without prefix", req(encoded, body), ReasonMalformed})
					}
					run(t, v, cases, secret, encoded)
				})
			}
		}
	}
	// Defaults: sha256, hex, no prefix.
	v := mustNew(t, HMAC, []string{secret}, Options{Header: "X-Signature"})
	checkOutcome(t, HMAC, v.Verify(Request{Body: []byte(body), Header: headers("X-Signature", hex.EncodeToString(hmacOf(sha256.New, secret, body)))}), "")
}

func TestBasicAuth(t *testing.T) {
	v := mustNew(t, BasicAuth, []string{"provider", "pa:ss word"}, Options{})
	basic := func(creds string) Request {
		return Request{Method: "POST", Header: headers("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(creds)))}
	}
	run(t, v, []case_{
		{"right", basic("provider:pa:ss word"), ""},
		{"scheme in lower case", Request{Header: headers("Authorization", "basic "+base64.StdEncoding.EncodeToString([]byte("provider:pa:ss word")))}, ""},
		{"wrong password", basic("provider:pa:ss wore"), ReasonMismatch},
		{"wrong user", basic("Provider:pa:ss word"), ReasonMismatch},
		{"password as user", basic("pa:ss word:provider"), ReasonMismatch},
		{"no colon", basic("providerpa"), ReasonMalformed},
		{"not base64", Request{Header: headers("Authorization", "Basic ***")}, ReasonMalformed},
		{"bearer instead", Request{Header: headers("Authorization", "Bearer provider")}, ReasonMalformed},
		{"none", Request{}, ReasonMissing},
	}, "pa:ss word", base64.StdEncoding.EncodeToString([]byte("provider:pa:ss word")))
}

func TestBearer(t *testing.T) {
	v := mustNew(t, Bearer, []string{"token-old", "token-new"}, Options{})
	bearer := func(value string) Request { return Request{Header: headers("Authorization", value)} }
	run(t, v, []case_{
		{"new token", bearer("Bearer token-new"), ""},
		{"old token", bearer("Bearer token-old"), ""},
		{"scheme case", bearer("bEaReR token-new"), ""},
		{"prefix of a token", bearer("Bearer token-ne"), ReasonMismatch},
		{"wrong", bearer("Bearer token-x"), ReasonMismatch},
		{"empty token", bearer("Bearer "), ReasonMalformed},
		{"basic instead", bearer("Basic dG9rZW4tbmV3"), ReasonMalformed},
		{"none", Request{}, ReasonMissing},
	}, "token-old", "token-new")
}

func TestNewRefusesBadConfiguration(t *testing.T) {
	eight := []string{"1", "2", "3", "4", "5", "6", "7", "8"}
	for _, c := range []struct {
		name, scheme string
		secrets      []string
		opts         Options
		want         string
	}{
		{"unknown scheme", "gitlab", []string{"s"}, Options{}, `unknown scheme "gitlab"`},
		{"no secret", GitHub, nil, Options{}, "want 1 to 8 secrets, got 0"},
		{"too many secrets", Stripe, append(eight, "9"), Options{}, "want 1 to 8 secrets, got 9"},
		{"empty secret", Slack, []string{"a", ""}, Options{}, "argument 2 is empty"},
		{"basic_auth one argument", BasicAuth, []string{"alice"}, Options{}, "want 2 arguments (user, password), got 1"},
		{"basic_auth three arguments", BasicAuth, []string{"alice", "pw", "x"}, Options{}, "got 3"},
		{"basic_auth colon in user", BasicAuth, []string{"us:er", "pw"}, Options{}, "must not contain ':'"},
		{"whsec not base64", StandardWebhooks, []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!"}, Options{}, "secret 2 is not whsec_ followed by base64"},
		{"whsec empty key", StandardWebhooks, []string{"whsec_"}, Options{}, "secret 1 holds an empty key"},
		{"unknown algorithm", HMAC, []string{"s"}, Options{Header: "X-Sig", Algorithm: "md5"}, `unknown algorithm "md5"`},
		{"unknown encoding", HMAC, []string{"s"}, Options{Header: "X-Sig", Encoding: "base32"}, `unknown encoding "base32"`},
		{"hmac without header", HMAC, []string{"s"}, Options{}, "header: required"},
		{"hmac bad header", HMAC, []string{"s"}, Options{Header: "X Sig"}, "not a valid header name"},
		{"hmac prefix with space", HMAC, []string{"s"}, Options{Header: "X-Sig", Prefix: "sha 256="}, "prefix must be"},
		{"hmac options on github", GitHub, []string{"s"}, Options{Algorithm: "sha1"}, "apply only to hmac"},
		{"tolerance on github", GitHub, []string{"s"}, Options{Tolerance: time.Minute}, "signs no timestamp"},
		{"negative tolerance", Stripe, []string{"s"}, Options{Tolerance: -time.Second}, "must not be negative"},
		{"secret too long", Bearer, []string{strings.Repeat("x", 1025)}, Options{}, "argument 1 is longer than 1024 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, err := New(c.scheme, c.secrets, c.opts)
			if err == nil {
				t.Fatalf("New accepted it: %v", v)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want it to contain %q", err, c.want)
			}
			for _, s := range c.secrets {
				if len(s) > 3 && strings.Contains(err.Error(), s) {
					t.Fatalf("error %q contains the secret %q", err, s)
				}
			}
		})
	}
	for _, s := range Schemes() {
		secrets, opts := []string{"whsec_" + base64.StdEncoding.EncodeToString([]byte("k"))}, Options{}
		switch s {
		case BasicAuth:
			secrets = []string{"user", "password"}
		case HMAC:
			opts.Header = "X-Sig"
		}
		if _, err := New(s, secrets, opts); err != nil {
			t.Errorf("New(%s): %v", s, err)
		}
	}
}

// A verifier printed by mistake (a log line, a %#v in a test failure) shows
// the scheme and the number of secrets, not the secrets.
func TestVerifierPrintsNoSecret(t *testing.T) {
	const secret = "whsec_c2VjcmV0LXRoYXQtbXVzdC1ub3QtYmUtcHJpbnRlZA=="
	for _, s := range Schemes() {
		secrets, opts := []string{secret}, Options{}
		switch s {
		case BasicAuth:
			secrets = []string{"user", secret}
		case HMAC:
			opts.Header = "X-Sig"
		}
		v := mustNew(t, s, secrets, opts)
		for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
			out := fmt.Sprintf(format, v)
			if strings.Contains(out, secret) || strings.Contains(out, "c2VjcmV0") || !strings.Contains(out, s) {
				t.Errorf("%s printed with %s: %s", s, format, out)
			}
		}
	}
}
