package handshake

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	metaToken  = "meatyhamhock" // Meta's documented sample verify token
	zoomSecret = "zoom-secret-token"
	zoomOld    = "previous-secret"
	// The plainToken of Zoom's documented validation request.
	zoomPlain = "qgg8vlvZRS6UYooatFL8Aw"
	// HMAC-SHA256(key, zoomPlain) in hex, computed outside Go with
	// `printf %s qgg8vlvZRS6UYooatFL8Aw | openssl dgst -sha256 -hmac <key>`.
	zoomEncrypted    = "d9e0d764a78494688ba3f2d5c0ed4ca311394b4834d959759213424d2df961e3"
	zoomEncryptedOld = "ed6d1f414bf0a6f6b107239ac4cd93c0b438ba5a530f08e1c9ec95d4027740e9"
	// Zoom's documented validation body.
	zoomBody = `{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}`
	// Slack's documented url_verification body.
	slackBody      = `{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`
	slackChallenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
	// A Graph token as Graph sends it (URL-encoded) and as it must come back.
	graphQuery = "validationToken=Validation%3A+Testing+client+application+reachability+for+subscription+Request-Id%3A+522a8e7e-096a-494c-aaf1-ac0dcfca45b7"
	graphToken = "Validation: Testing client application reachability for subscription Request-Id: 522a8e7e-096a-494c-aaf1-ac0dcfca45b7"
)

func mustNew(t testing.TB, name string, args ...string) Handshake {
	t.Helper()
	h, err := New(name, args)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	return h
}

// zoomSign returns Zoom's signature headers for body, signed with secret at
// time at.
func zoomSign(secret, body string, at time.Time) http.Header {
	ts := strconv.FormatInt(at.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("v0:" + ts + ":" + body))
	return http.Header{
		"X-Zm-Request-Timestamp": {ts},
		"X-Zm-Signature":         {"v0=" + hex.EncodeToString(mac.Sum(nil))},
		"Content-Type":           {"application/json; charset=utf-8"},
	}
}

// answered is what a real client saw.
type answered struct {
	handshake bool
	status    int
	header    http.Header
	body      string
}

// serve puts h in front of a real HTTP server the way an entrypoint will:
// the body read first, the handshake asked, anything else "ingested" (here
// a 299 that no handshake answer uses).
func serve(t *testing.T, h Handshake) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		resp, ok := h.Answer(r, body)
		if !ok {
			if resp.Status != 0 || resp.Body != nil || resp.Header != nil || resp.ContentType != "" {
				t.Errorf("%s: not a handshake, yet a response: %+v", h.Name(), resp)
			}
			w.WriteHeader(299)
			return
		}
		if err := resp.Write(w); err != nil {
			t.Errorf("write: %v", err)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func send(t *testing.T, srv *httptest.Server, method, query string, header http.Header, body string) answered {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+"/hooks/k?"+query, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answered{handshake: res.StatusCode != 299, status: res.StatusCode, header: res.Header, body: string(b)}
}

// TestEachHandshakeAnsweredAsDocumented sends each provider's documented
// example request and checks the answer its documentation asks for.
func TestEachHandshakeAnsweredAsDocumented(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name   string
		h      Handshake
		method string
		query  string
		header http.Header
		body   string
		// want
		contentType string
		wantBody    string
	}{
		{"slack", mustNew(t, "slack"), "POST", "", http.Header{"Content-Type": {"application/json"}}, slackBody,
			"text/plain", slackChallenge},
		{"meta", mustNew(t, "meta", metaToken), "GET", "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock", nil, "",
			"text/plain", "1158201444"},
		{"graph", mustNew(t, "graph"), "POST", graphQuery, http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, "",
			"text/plain", graphToken},
		{"dropbox", mustNew(t, "dropbox"), "GET", "challenge=abc123", nil, "",
			"text/plain", "abc123"},
		{"zoom", mustNew(t, "zoom", zoomSecret), "POST", "", zoomSign(zoomSecret, zoomBody, now), zoomBody,
			"application/json", `{"plainToken":"` + zoomPlain + `","encryptedToken":"` + zoomEncrypted + `"}`},
		{"zoom signed with the previous secret during a rotation", mustNew(t, "zoom", zoomSecret, zoomOld), "POST", "", zoomSign(zoomOld, zoomBody, now), zoomBody,
			"application/json", `{"plainToken":"` + zoomPlain + `","encryptedToken":"` + zoomEncryptedOld + `"}`},
		{"zoom timestamp at the edge of the tolerance", mustNew(t, "zoom", zoomSecret), "POST", "", zoomSign(zoomSecret, zoomBody, now.Add(-ZoomTolerance+5*time.Second)), zoomBody,
			"application/json", `{"plainToken":"` + zoomPlain + `","encryptedToken":"` + zoomEncrypted + `"}`},
		{"challenge of the longest length accepted", mustNew(t, "dropbox"), "GET", "challenge=" + strings.Repeat("a", MaxChallengeLen), nil, "",
			"text/plain", strings.Repeat("a", MaxChallengeLen)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.h.Method() != tc.method {
				t.Fatalf("Method() = %s, the documented request is a %s", tc.h.Method(), tc.method)
			}
			got := send(t, serve(t, tc.h), tc.method, tc.query, tc.header, tc.body)
			if got.status != http.StatusOK {
				t.Fatalf("status %d (%s), want 200", got.status, got.body)
			}
			if ct := got.header.Get("Content-Type"); ct != tc.contentType {
				t.Errorf("Content-Type %q, want %q", ct, tc.contentType)
			}
			if n := got.header.Get("X-Content-Type-Options"); n != "nosniff" {
				t.Errorf("X-Content-Type-Options %q, want nosniff", n)
			}
			if got.body != tc.wantBody {
				t.Errorf("body %q, want %q", got.body, tc.wantBody)
			}
		})
	}
}

// TestNotAHandshakeIsIngested: ordinary events and requests without the
// handshake's parameters are left to the ingest path (ok false).
func TestNotAHandshakeIsIngested(t *testing.T) {
	now := time.Now()
	meetingStarted := `{"event":"meeting.started","payload":{"account_id":"A","object":{"id":"1","topic":"endpoint.url_validation"}},"event_ts":1635885799302}`
	for _, tc := range []struct {
		name   string
		h      Handshake
		method string
		query  string
		header http.Header
		body   string
	}{
		{"slack event_callback (mentioning url_verification)", mustNew(t, "slack"), "POST", "", nil,
			`{"token":"x","team_id":"T1","type":"event_callback","event":{"type":"message","text":"what is url_verification?"}}`},
		{"slack body that is not JSON", mustNew(t, "slack"), "POST", "", nil, "type=url_verification&challenge=abc"},
		{"slack url_verification sent with GET", mustNew(t, "slack"), "GET", "", nil, slackBody},
		{"slack type spelled with a JSON escape", mustNew(t, "slack"), "POST", "", nil, `{"type":"url\u005fverification","challenge":"abc"}`},
		{"slack keys in another case", mustNew(t, "slack"), "POST", "", nil, `{"TYPE":"url_verification","Challenge":"abc"}`},
		{"zoom event of another type", mustNew(t, "zoom", zoomSecret), "POST", "", zoomSign(zoomSecret, meetingStarted, now), meetingStarted},
		{"zoom body that is not JSON", mustNew(t, "zoom", zoomSecret), "POST", "", nil, "endpoint.url_validation"},
		{"meta GET without the parameters", mustNew(t, "meta", metaToken), "GET", "", nil, ""},
		{"meta GET with other parameters", mustNew(t, "meta", metaToken), "GET", "page=2", nil, ""},
		{"meta parameters on a POST", mustNew(t, "meta", metaToken), "POST", "hub.mode=subscribe&hub.challenge=1&hub.verify_token=meatyhamhock", nil, `{"object":"page"}`},
		{"graph change notification", mustNew(t, "graph"), "POST", "", nil, `{"value":[{"subscriptionId":"s","clientState":"c","changeType":"created"}]}`},
		{"graph token on a GET", mustNew(t, "graph"), "GET", graphQuery, nil, ""},
		{"dropbox GET without the parameter", mustNew(t, "dropbox"), "GET", "", nil, ""},
		{"dropbox notification", mustNew(t, "dropbox"), "POST", "", nil, `{"list_folder":{"accounts":["dbid:1"]},"delta":{"users":[1]}}`},
		{"dropbox challenge on a POST", mustNew(t, "dropbox"), "POST", "challenge=abc", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := send(t, serve(t, tc.h), tc.method, tc.query, tc.header, tc.body); got.handshake {
				t.Fatalf("answered as a handshake: %d %q", got.status, got.body)
			}
		})
	}
}

// TestRefusedHandshakes: requests that claim to be a handshake but are
// unauthenticated or carry a hostile challenge get a 4xx, never a 200 and
// never ingestion.
func TestRefusedHandshakes(t *testing.T) {
	now := time.Now()
	huge := strings.Repeat("a", MaxChallengeLen+1)
	zoomWith := func(plain string) string {
		return `{"payload":{"plainToken":` + jsonQuote(plain) + `},"event_ts":1,"event":"endpoint.url_validation"}`
	}
	signed := func(body string) http.Header { return zoomSign(zoomSecret, body, now) }
	slackWith := func(challenge string) string {
		return `{"type":"url_verification","challenge":` + jsonQuote(challenge) + `}`
	}
	type req struct {
		name   string
		h      Handshake
		method string
		query  string
		header http.Header
		body   string
		status int
	}
	cases := []req{
		{"meta wrong verify token", mustNew(t, "meta", metaToken), "GET", "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhocK", nil, "", 403},
		{"meta verify token a prefix of the right one", mustNew(t, "meta", metaToken), "GET", "hub.mode=subscribe&hub.challenge=1&hub.verify_token=meaty", nil, "", 403},
		{"meta without a verify token", mustNew(t, "meta", metaToken), "GET", "hub.mode=subscribe&hub.challenge=1158201444", nil, "", 403},
		{"meta verify token given twice", mustNew(t, "meta", metaToken), "GET", "hub.mode=subscribe&hub.challenge=1&hub.verify_token=meatyhamhock&hub.verify_token=x", nil, "", 403},
		{"meta mode other than subscribe", mustNew(t, "meta", metaToken), "GET", "hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=meatyhamhock", nil, "", 400},
		{"meta without a challenge", mustNew(t, "meta", metaToken), "GET", "hub.mode=subscribe&hub.verify_token=meatyhamhock", nil, "", 400},
		{"meta challenge given twice", mustNew(t, "meta", metaToken), "GET", "hub.mode=subscribe&hub.challenge=1&hub.challenge=2&hub.verify_token=meatyhamhock", nil, "", 400},
		{"meta malformed query", mustNew(t, "meta", metaToken), "GET", "hub.mode=subscribe&hub.challenge=%zz&hub.verify_token=meatyhamhock", nil, "", 400},
		{"zoom without a signature", mustNew(t, "zoom", zoomSecret), "POST", "", nil, zoomBody, 401},
		{"zoom signed with another secret", mustNew(t, "zoom", zoomSecret), "POST", "", zoomSign("not-the-secret", zoomBody, now), zoomBody, 401},
		{"zoom signature 10 minutes old", mustNew(t, "zoom", zoomSecret), "POST", "", zoomSign(zoomSecret, zoomBody, now.Add(-10*time.Minute)), zoomBody, 401},
		{"zoom signature 10 minutes ahead", mustNew(t, "zoom", zoomSecret), "POST", "", zoomSign(zoomSecret, zoomBody, now.Add(10*time.Minute)), zoomBody, 401},
		{"zoom signature over another body", mustNew(t, "zoom", zoomSecret), "POST", "", zoomSign(zoomSecret, zoomWith("other"), now), zoomBody, 401},
		// Unsigned, this would make the gateway sign a forged event for
		// the caller (the answer is HMAC(secret, plainToken)).
		{"zoom unsigned plainToken shaped as a signed message", mustNew(t, "zoom", zoomSecret), "POST", "", nil, zoomWith("v0:1700000000:forged"), 401},
		{"zoom without a plainToken", mustNew(t, "zoom", zoomSecret), "POST", "", signed(`{"event":"endpoint.url_validation","payload":{}}`), `{"event":"endpoint.url_validation","payload":{}}`, 400},
		{"zoom plainToken not a string", mustNew(t, "zoom", zoomSecret), "POST", "", signed(`{"event":"endpoint.url_validation","payload":{"plainToken":7}}`), `{"event":"endpoint.url_validation","payload":{"plainToken":7}}`, 400},
		{"zoom plainToken key in another case", mustNew(t, "zoom", zoomSecret), "POST", "", signed(`{"event":"endpoint.url_validation","payload":{"PlainToken":"abc"}}`), `{"event":"endpoint.url_validation","payload":{"PlainToken":"abc"}}`, 400},
		{"slack without a challenge", mustNew(t, "slack"), "POST", "", nil, `{"type":"url_verification"}`, 400},
		{"slack challenge not a string", mustNew(t, "slack"), "POST", "", nil, `{"type":"url_verification","challenge":{"a":1}}`, 400},
		{"graph token given twice", mustNew(t, "graph"), "POST", graphQuery + "&validationToken=x", nil, "", 400},
		{"dropbox empty challenge", mustNew(t, "dropbox"), "GET", "challenge=", nil, "", 400},
	}
	// Every echoing handshake refuses the same hostile challenges.
	for _, hostile := range []struct{ what, value string }{
		{"huge", huge},
		{"CRLF and a header", "abc\r\nSet-Cookie: a=b"},
		{"NUL", "abc\x00"},
		{"terminal escape", "\x1b[31mred"},
		{"DEL", "abc\x7f"},
		{"markup", "<script>alert(1)</script>"},
		{"quote", `abc"def`},
		{"ampersand", "a&b"},
		{"non-ASCII", "caf\u00e9"},
		{"invalid UTF-8", "abc\xff"},
	} {
		q := "=" + urlEscape(hostile.value)
		cases = append(cases,
			req{"slack " + hostile.what, mustNew(t, "slack"), "POST", "", nil, slackWith(hostile.value), 400},
			req{"meta " + hostile.what, mustNew(t, "meta", metaToken), "GET", "hub.mode=subscribe&hub.verify_token=meatyhamhock&hub.challenge" + q, nil, "", 400},
			req{"graph " + hostile.what, mustNew(t, "graph"), "POST", "validationToken" + q, nil, "", 400},
			req{"dropbox " + hostile.what, mustNew(t, "dropbox"), "GET", "challenge" + q, nil, "", 400},
			req{"zoom " + hostile.what, mustNew(t, "zoom", zoomSecret), "POST", "", signed(zoomWith(hostile.value)), zoomWith(hostile.value), 400},
		)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := send(t, serve(t, tc.h), tc.method, tc.query, tc.header, tc.body)
			if !got.handshake || got.status != tc.status {
				t.Fatalf("got %d %q (handshake %v), want %d", got.status, got.body, got.handshake, tc.status)
			}
			if ct := got.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want the gateway's JSON error", ct)
			}
			if strings.Contains(got.body, metaToken) || strings.Contains(got.body, zoomSecret) {
				t.Errorf("refusal %q quotes a secret", got.body)
			}
			for _, c := range []byte(got.body) {
				if c < 0x20 || c > 0x7e || c == '<' || c == '>' {
					t.Fatalf("refusal %q carries byte 0x%02x", got.body, c)
				}
			}
		})
	}
}

// jsonQuote is s as a JSON string (invalid UTF-8 becomes U+FFFD).
func jsonQuote(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// urlEscape percent-encodes every byte, so that control bytes and invalid
// UTF-8 reach the server exactly.
func urlEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%%02X", s[i])
	}
	return b.String()
}

func TestNewChecksArguments(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"slack", nil, ""},
		{"slack", []string{"x"}, "takes no arguments"},
		{"graph", []string{"x"}, "takes no arguments"},
		{"dropbox", []string{"x"}, "takes no arguments"},
		{"meta", []string{"tok"}, ""},
		{"meta", nil, "exactly one verify token"},
		{"meta", []string{"a", "b"}, "exactly one verify token"},
		{"meta", []string{""}, "is empty"},
		{"meta", []string{"tok\nen"}, "control character"},
		{"meta", []string{strings.Repeat("t", MaxChallengeLen+1)}, "longer than"},
		{"zoom", []string{"s1"}, ""},
		{"zoom", []string{"s1", "s2"}, ""},
		{"zoom", nil, "secret token"},
		{"zoom", []string{"s1", ""}, "secret token 2 is empty"},
		{"github", nil, "unknown handshake"},
	} {
		h, err := New(tc.name, tc.args)
		if tc.wantErr == "" {
			if err != nil || h.Name() != tc.name {
				t.Errorf("New(%s, %d args) = %v, %v", tc.name, len(tc.args), h, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("New(%s, %d args): error %v, want one containing %q", tc.name, len(tc.args), err, tc.wantErr)
			continue
		}
		for _, a := range tc.args {
			if len(a) > 2 && strings.Contains(err.Error(), a) {
				t.Errorf("New(%s): error %q quotes an argument", tc.name, err)
			}
		}
	}
}

// TestSecretsNotPrinted: a handshake logged with %v or %s names itself and
// shows no secret.
func TestSecretsNotPrinted(t *testing.T) {
	for _, h := range []Handshake{mustNew(t, "meta", metaToken), mustNew(t, "zoom", zoomSecret, zoomOld)} {
		for _, s := range []string{fmt.Sprintf("%v", h), fmt.Sprintf("%s", h), fmt.Sprintf("%+v", h)} {
			if strings.Contains(s, metaToken) || strings.Contains(s, zoomSecret) || strings.Contains(s, zoomOld) {
				t.Errorf("%s printed as %q", h.Name(), s)
			}
		}
	}
}

func TestMethods(t *testing.T) {
	want := map[string]string{"slack": "POST", "meta": "GET", "graph": "POST", "dropbox": "GET", "zoom": "POST"}
	for _, name := range Names() {
		args := map[string][]string{"meta": {metaToken}, "zoom": {zoomSecret}}[name]
		if got := mustNew(t, name, args...).Method(); got != want[name] {
			t.Errorf("%s: Method() = %s, want %s", name, got, want[name])
		}
	}
	if len(Names()) != len(want) {
		t.Errorf("Names() = %v", Names())
	}
}
