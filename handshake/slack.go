package handshake

import (
	"bytes"
	"encoding/json"
	"net/http"
)

// slackHandshake answers Slack's Events API url_verification.
//
// https://api.slack.com/events/url_verification: Slack POSTs
//
//	{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}
//
// (no outer event_callback envelope) and expects "HTTP 200 OK,
// Content-type: text/plain" with the challenge as the body; JSON
// {"challenge":…} and a form body are documented alternatives. We answer
// the first form.
//
// The token field is Slack's deprecated verification token and is ignored.
// Slack signs this request like any other (X-Slack-Signature); the answer
// echoes only the challenge and reveals nothing secret, so answering it
// unverified gives a forger nothing, and an entrypoint's `verify slack`
// still guards every event.
type slackHandshake struct{}

func (slackHandshake) Name() string   { return "slack" }
func (slackHandshake) Method() string { return http.MethodPost }
func (slackHandshake) String() string { return "handshake slack" }

var slackType = []byte("url_verification")

func (slackHandshake) Answer(r *http.Request, body []byte) (Response, bool) {
	// Events are the common case: skip the JSON decode unless the type's
	// literal text is there. A body that spells it with JSON escapes is
	// not Slack's and is ingested like any event.
	if r.Method != http.MethodPost || !bytes.Contains(body, slackType) {
		return Response{}, false
	}
	// A map, not a struct: encoding/json matches struct fields without
	// regard to case, and Slack's keys are exactly "type" and "challenge".
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil || !jsonStringIs(m["type"], "url_verification") {
		return Response{}, false
	}
	var challenge string
	if json.Unmarshal(m["challenge"], &challenge) != nil {
		return refuse(http.StatusBadRequest, "slack handshake: challenge is missing or not a string"), true
	}
	if err := checkChallenge(challenge); err != nil {
		return refuse(http.StatusBadRequest, "slack handshake: challenge "+err.Error()), true
	}
	return plainText(challenge), true
}
