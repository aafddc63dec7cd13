package handshake

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// FuzzAnswer asks every handshake about arbitrary requests. With sign set,
// the body is given a fresh, valid Zoom signature, so that the fuzzer can
// reach the answers behind Zoom's signature check too.
func FuzzAnswer(f *testing.F) {
	f.Add("POST", "", []byte(slackBody), false)
	f.Add("GET", "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock", []byte(nil), false)
	f.Add("POST", graphQuery, []byte(nil), false)
	f.Add("GET", "challenge=abc123", []byte(nil), false)
	f.Add("POST", "", []byte(zoomBody), true)
	f.Add("POST", "", []byte(zoomBody), false)
	f.Add("POST", "", []byte(`{"type":"url_verification","challenge":"a\r\nb"}`), false)
	f.Add("POST", "", []byte(`{"type":"url_verification","challenge":"<b>"}`), false)
	f.Add("GET", "challenge=%0d%0aX:%20y", []byte(nil), false)
	f.Add("GET", "hub.mode=subscribe&hub.challenge=%3Cscript%3E&hub.verify_token=meatyhamhock", []byte(nil), false)
	f.Add("POST", "validationToken=a&validationToken=b", []byte(nil), false)
	f.Add("POST", "", []byte(`{"event":"endpoint.url_validation","payload":{"plainToken":"\u001b[2J"}}`), true)
	f.Add("POST", "", []byte(`{"event":"meeting.started","payload":{"object":{"id":"endpoint.url_validation"}}}`), true)
	f.Add("PUT", "challenge=x&validationToken=y&hub.mode=subscribe", []byte(`{"type":"url_verification"}`), false)

	var hs []Handshake
	for _, name := range Names() {
		hs = append(hs, mustNew(f, name, map[string][]string{"meta": {metaToken}, "zoom": {zoomSecret}}[name]...))
	}
	f.Fuzz(func(t *testing.T, method, rawQuery string, body []byte, sign bool) {
		r := &http.Request{Method: method, URL: &url.URL{Path: "/hooks/k", RawQuery: rawQuery}, Header: http.Header{}}
		if sign {
			r.Header = zoomSign(zoomSecret, string(body), time.Now())
		}
		for _, h := range hs {
			resp, ok := h.Answer(r, body)
			if !ok {
				if resp.Status != 0 || resp.Body != nil || resp.Header != nil || resp.ContentType != "" {
					t.Fatalf("%s: not a handshake, yet a response %+v", h.Name(), resp)
				}
				continue
			}
			if method != h.Method() {
				t.Fatalf("%s: answered a %q request; its handshake is a %s", h.Name(), method, h.Method())
			}
			checkAnswer(t, h, r, body, resp)
		}
	})
}

// checkAnswer holds for every answer: a known status, nosniff, a bounded body
// of printable ASCII without markup, and a 200 echoes exactly what the
// provider sent (or, for Zoom, its HMAC under the secret).
func checkAnswer(t *testing.T, h Handshake, r *http.Request, body []byte, resp Response) {
	t.Helper()
	switch resp.Status {
	case http.StatusOK, http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
	default:
		t.Fatalf("%s: status %d", h.Name(), resp.Status)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("%s: no nosniff", h.Name())
	}
	if len(resp.Body) > 2*MaxChallengeLen+200 {
		t.Fatalf("%s: %d-byte answer", h.Name(), len(resp.Body))
	}
	for _, c := range resp.Body {
		if c < 0x20 || c > 0x7e || c == '<' || c == '>' {
			t.Fatalf("%s: answer %q carries byte 0x%02x", h.Name(), resp.Body, c)
		}
	}
	if resp.Status != http.StatusOK {
		if resp.ContentType != "application/json" || !json.Valid(resp.Body) {
			t.Fatalf("%s: refusal %s %q", h.Name(), resp.ContentType, resp.Body)
		}
		return
	}
	q, _ := url.ParseQuery(r.URL.RawQuery)
	var sent string
	switch h.Name() {
	case "slack":
		var m map[string]json.RawMessage
		if json.Unmarshal(body, &m) != nil || json.Unmarshal(m["challenge"], &sent) != nil {
			t.Fatalf("slack: answered %q for a body without a challenge", resp.Body)
		}
	case "meta":
		if q.Get("hub.verify_token") != metaToken {
			t.Fatalf("meta: answered without the verify token")
		}
		sent = q.Get("hub.challenge")
	case "graph":
		sent = q.Get("validationToken")
	case "dropbox":
		sent = q.Get("challenge")
	case "zoom":
		var in, payload map[string]json.RawMessage
		var plain string
		var out map[string]string
		if json.Unmarshal(body, &in) != nil || json.Unmarshal(in["payload"], &payload) != nil ||
			json.Unmarshal(payload["plainToken"], &plain) != nil ||
			json.Unmarshal(resp.Body, &out) != nil || len(out) != 2 {
			t.Fatalf("zoom: answer %q to %q", resp.Body, body)
		}
		if r.Header.Get("X-Zm-Signature") == "" {
			t.Fatalf("zoom: answered an unsigned request")
		}
		mac := hmac.New(sha256.New, []byte(zoomSecret))
		mac.Write([]byte(plain))
		if out["plainToken"] != plain || out["encryptedToken"] != hex.EncodeToString(mac.Sum(nil)) {
			t.Fatalf("zoom: answer %q to plainToken %q", resp.Body, plain)
		}
		return
	}
	if resp.ContentType != "text/plain" || !bytes.Equal(resp.Body, []byte(sent)) || checkChallenge(sent) != nil {
		t.Fatalf("%s: answered %s %q, the request carried %q", h.Name(), resp.ContentType, resp.Body, sent)
	}
}
