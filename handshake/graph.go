package handshake

import "net/http"

// graphHandshake answers Microsoft Graph's notification URL validation, sent
// when a change-notification subscription (or its lifecycleNotificationUrl)
// is created.
//
// https://learn.microsoft.com/graph/change-notifications-delivery-webhooks
// ("notificationUrl validation"): Graph sends
//
//	POST https://{notificationUrl}?validationToken={opaqueTokenCreatedByMicrosoftGraph}
//
// and the endpoint must "properly decode the URL to get the plain text
// validation token", then respond within 10 seconds with 200 OK, a content
// type of text/plain and a body that is the URL-decoded token ("If the
// client returns an encoded validation token, the validation fails").
// The page recommends escaping HTML or JavaScript since "malicious actors
// can use the notification endpoint for cross-site scripting", and says
// Graph never sends either; so a token holding markup characters is
// refused rather than escaped (an escaped token would fail validation
// anyway), and the answer is text/plain with nosniff.
//
// Only POST is a handshake: that is the documented method, and a GET keeps
// its 405.
type graphHandshake struct{}

func (graphHandshake) Name() string   { return "graph" }
func (graphHandshake) Method() string { return http.MethodPost }
func (graphHandshake) String() string { return "handshake graph" }

func (graphHandshake) Answer(r *http.Request, _ []byte) (Response, bool) {
	if r.Method != http.MethodPost {
		return Response{}, false
	}
	q, err := queryParams(r)
	if !q.Has("validationToken") {
		return Response{}, false
	}
	if err != nil {
		return refuse(http.StatusBadRequest, "graph handshake: malformed query"), true
	}
	// url.ParseQuery has already decoded the token (+ as space, %XX).
	token, err := single(q, "validationToken")
	if err != nil {
		return refuse(http.StatusBadRequest, "graph handshake: "+err.Error()), true
	}
	if err := checkChallenge(token); err != nil {
		return refuse(http.StatusBadRequest, "graph handshake: validationToken "+err.Error()), true
	}
	return plainText(token), true
}
