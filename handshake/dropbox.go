package handshake

import "net/http"

// dropboxHandshake answers Dropbox's webhook verification request.
//
// https://www.dropbox.com/developers/reference/webhooks ("The verification
// request"): "an HTTP GET request with a query parameter called challenge.
// Your app needs to respond by echoing back that challenge parameter. In
// order to avoid introducing a reflected XSS vulnerability, set the
// following headers in your response to the verification request:
// 'Content-Type: text/plain' 'X-Content-Type-Options: nosniff'". The
// webhooks docs add that the app "has up to ten seconds to respond" and
// that Dropbox does not retry a failed verification.
type dropboxHandshake struct{}

func (dropboxHandshake) Name() string   { return "dropbox" }
func (dropboxHandshake) Method() string { return http.MethodGet }
func (dropboxHandshake) String() string { return "handshake dropbox" }

func (dropboxHandshake) Answer(r *http.Request, _ []byte) (Response, bool) {
	if r.Method != http.MethodGet {
		return Response{}, false
	}
	q, err := queryParams(r)
	if !q.Has("challenge") {
		return Response{}, false
	}
	if err != nil {
		return refuse(http.StatusBadRequest, "dropbox handshake: malformed query"), true
	}
	challenge, err := single(q, "challenge")
	if err != nil {
		return refuse(http.StatusBadRequest, "dropbox handshake: "+err.Error()), true
	}
	if err := checkChallenge(challenge); err != nil {
		return refuse(http.StatusBadRequest, "dropbox handshake: challenge "+err.Error()), true
	}
	return plainText(challenge), true
}
