package handshake

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
)

// metaHandshake answers the verification request of Meta's Webhooks product
// (Facebook, Instagram, WhatsApp, Messenger).
//
// https://developers.facebook.com/docs/graph-api/webhooks/getting-started/
// ("Verification Requests"): Meta sends
//
//	GET <endpoint>?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock
//
// hub.mode "will always be set to subscribe", hub.challenge is "an int you
// must pass back to us", and the endpoint must verify that hub.verify_token
// matches the Verify Token set in the App Dashboard, then respond with the
// hub.challenge value. The sample app answers a mismatch with 403.
//
// The challenge is checked with the same charset as every other echo rather
// than as digits only, so that a longer or non-numeric challenge still works;
// it is echoed only to a caller who knows the verify token.
type metaHandshake struct {
	// Only the token's digest is kept: comparing digests takes the same
	// time whatever the presented token's length.
	tokenSum [sha256.Size]byte
}

func newMetaHandshake(verifyToken string) metaHandshake {
	return metaHandshake{tokenSum: sha256.Sum256([]byte(verifyToken))}
}

func (metaHandshake) Name() string   { return "meta" }
func (metaHandshake) Method() string { return http.MethodGet }
func (metaHandshake) String() string { return "handshake meta" }

func (h metaHandshake) Answer(r *http.Request, _ []byte) (Response, bool) {
	if r.Method != http.MethodGet {
		return Response{}, false
	}
	q, err := queryParams(r)
	if !q.Has("hub.mode") && !q.Has("hub.challenge") && !q.Has("hub.verify_token") {
		return Response{}, false
	}
	if err != nil {
		return refuse(http.StatusBadRequest, "meta handshake: malformed query"), true
	}
	// The token first: a caller who does not know it learns nothing about
	// what else would have been accepted.
	token, err := single(q, "hub.verify_token")
	if err != nil {
		return refuse(http.StatusForbidden, "meta handshake: "+err.Error()), true
	}
	sum := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(sum[:], h.tokenSum[:]) != 1 {
		return refuse(http.StatusForbidden, "meta handshake: wrong verify token"), true
	}
	mode, err := single(q, "hub.mode")
	if err != nil {
		return refuse(http.StatusBadRequest, "meta handshake: "+err.Error()), true
	}
	if mode != "subscribe" {
		return refuse(http.StatusBadRequest, "meta handshake: hub.mode is not subscribe"), true
	}
	challenge, err := single(q, "hub.challenge")
	if err != nil {
		return refuse(http.StatusBadRequest, "meta handshake: "+err.Error()), true
	}
	if err := checkChallenge(challenge); err != nil {
		return refuse(http.StatusBadRequest, "meta handshake: hub.challenge "+err.Error()), true
	}
	return plainText(challenge), true
}
