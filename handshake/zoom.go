package handshake

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ZoomTolerance is how far a Zoom validation request's timestamp may be from
// the gateway's clock, the same default as inbound verification.
const ZoomTolerance = 5 * time.Minute

// zoomHandshake answers Zoom's webhook endpoint validation (the
// challenge-response check Zoom runs when the endpoint is saved and again
// every 72 hours).
//
// https://developers.zoom.us/docs/api/webhooks/ ("Validate your webhook
// endpoint", and the changelog entry "Webhook URL validation enforcement"):
// Zoom POSTs
//
//	{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}
//
// and expects, within 3 seconds, a 200 with the JSON object
// {"plainToken": <the plainToken>, "encryptedToken": <HMAC SHA-256 of the
// plainToken keyed with the app's secret token, in hex>}.
//
// Zoom signs this request as it signs events (x-zm-signature: v0=<hex HMAC
// SHA-256 of "v0:<x-zm-request-timestamp>:<raw body>">, the timestamp in
// seconds), and its own sample (github.com/zoom/webhook-sample, index.js)
// checks that signature before it answers. We must too: the answer is an
// HMAC with the same key over a value the caller chose, so an unchecked
// answer would sign "v0:<ts>:<any body>" for anyone and forge every Zoom
// event. A validation request without a valid, fresh signature is refused
// with 401; the plainToken's charset (no control characters) is checked on
// top of that.
//
// Several secrets may be configured while one is being rotated; the secret
// whose signature matches is the one the answer is keyed with.
type zoomHandshake struct {
	secrets []string
}

func (zoomHandshake) Name() string   { return "zoom" }
func (zoomHandshake) Method() string { return http.MethodPost }
func (zoomHandshake) String() string { return "handshake zoom" }

var zoomEvent = []byte("endpoint.url_validation")

func (h zoomHandshake) Answer(r *http.Request, body []byte) (Response, bool) {
	// As with Slack: no JSON decode unless the event's literal text is there.
	if r.Method != http.MethodPost || !bytes.Contains(body, zoomEvent) {
		return Response{}, false
	}
	// Maps, not structs, so that keys match exactly (see slackHandshake).
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil || !jsonStringIs(m["event"], "endpoint.url_validation") {
		return Response{}, false
	}
	secret, ok := h.signedWith(r.Header, body, time.Now())
	if !ok {
		return refuse(http.StatusUnauthorized, "zoom handshake: missing, stale or wrong x-zm-signature"), true
	}
	var payload map[string]json.RawMessage
	var plain string
	if json.Unmarshal(m["payload"], &payload) != nil || json.Unmarshal(payload["plainToken"], &plain) != nil {
		return refuse(http.StatusBadRequest, "zoom handshake: payload.plainToken is missing or not a string"), true
	}
	if err := checkChallenge(plain); err != nil {
		return refuse(http.StatusBadRequest, "zoom handshake: plainToken "+err.Error()), true
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(plain))
	return jsonOK(struct {
		PlainToken     string `json:"plainToken"`
		EncryptedToken string `json:"encryptedToken"`
	}{plain, hex.EncodeToString(mac.Sum(nil))}), true
}

// signedWith returns the configured secret whose signature the request
// carries, if its timestamp is within ZoomTolerance of now.
func (h zoomHandshake) signedWith(header http.Header, body []byte, now time.Time) (string, bool) {
	ts := header.Get("x-zm-request-timestamp")
	if ts == "" || len(ts) > 12 || strings.TrimLeft(ts, "0123456789") != "" {
		return "", false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", false
	}
	if d := now.Sub(time.Unix(sec, 0)); d > ZoomTolerance || d < -ZoomTolerance {
		return "", false
	}
	hexSig, found := strings.CutPrefix(header.Get("x-zm-signature"), "v0=")
	if !found {
		return "", false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return "", false
	}
	for _, s := range h.secrets {
		mac := hmac.New(sha256.New, []byte(s))
		mac.Write([]byte("v0:" + ts + ":"))
		mac.Write(body)
		if hmac.Equal(got, mac.Sum(nil)) {
			return s, true
		}
	}
	return "", false
}
