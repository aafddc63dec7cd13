// Package handshake answers the subscription handshakes some providers send
// to an entrypoint before they deliver anything to it: Slack's
// url_verification, Meta's hub.challenge, Microsoft Graph's validationToken,
// Dropbox's challenge and Zoom's endpoint.url_validation. A handshake is
// answered, never stored as an event. It knows nothing of Caddy or storage:
// the entrypoint's handler asks its Handshake first and ingests the request
// only when the answer is "not a handshake".
//
// Everything echoed back comes from the request, so every echoed value is
// bounded (MaxChallengeLen) and limited to printable ASCII without the
// characters that quote or open markup (see checkChallenge). Answers that
// echo are text/plain (or JSON built by encoding/json) and always carry
// X-Content-Type-Options: nosniff, so a browser cannot be talked into reading
// an echoed challenge as HTML or script; the charset limit is defence in
// depth on top of that, and also keeps control characters (CR, LF, terminal
// escapes) out of responses and logs. A request that claims to be a
// handshake but is malformed or unauthenticated is answered with a 4xx and
// is not stored either.
package handshake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
)

// MaxChallengeLen bounds any value a handshake echoes, and the secrets a
// handshake is configured with. The documented challenges are far shorter
// (Slack's example is 52 bytes, Meta's an integer, Zoom's plainToken 22,
// Graph's token about 120); the bound leaves room for format changes that
// Graph explicitly reserves ("treat the validation token value as opaque").
const MaxChallengeLen = 1024

// Handshake answers one provider's subscription handshake on one entrypoint.
// A Handshake is immutable and safe for concurrent use.
type Handshake interface {
	// Name is the provider's name as written in the Caddyfile: slack, meta,
	// graph, dropbox or zoom.
	Name() string
	// Method is the HTTP method the provider's handshake request uses. An
	// entrypoint with a GET handshake must let GET requests reach Answer;
	// any other GET keeps getting 405.
	Method() string
	// Answer reports whether r (whose body has already been read into body,
	// within the entrypoint's max_body_size) is this provider's handshake.
	// ok false means it is not one, and the request is to be ingested as an
	// event; resp is then the zero Response. ok true means resp is the
	// complete answer (a 200, or a 4xx when the handshake is malformed or
	// unauthenticated) and nothing is to be stored. Answer does not read
	// r.Body and does no I/O, so it answers well within every provider's
	// deadline (Graph's 10 s, Zoom's 3 s).
	Answer(r *http.Request, body []byte) (resp Response, ok bool)
}

// Response is a handshake's complete answer.
type Response struct {
	Status      int
	ContentType string
	// Header holds the headers besides Content-Type and Content-Length.
	Header http.Header
	Body   []byte
}

// Write sends the answer: Header, then Content-Type and Content-Length,
// then the status and the body.
func (resp Response) Write(w http.ResponseWriter) error {
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = slices.Clone(v)
	}
	h.Set("Content-Type", resp.ContentType)
	h.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	w.WriteHeader(resp.Status)
	if _, err := w.Write(resp.Body); err != nil {
		return fmt.Errorf("write handshake answer: %w", err)
	}
	return nil
}

// Names lists the providers New knows, in the order the Caddyfile
// documentation gives them.
func Names() []string {
	return []string{"slack", "meta", "graph", "dropbox", "zoom"}
}

// New returns the named provider's handshake. args are the words after the
// name in `handshake <name> <args>...`, with placeholders already replaced:
// none for slack, graph and dropbox; the verify token for meta; one or more
// secret tokens for zoom (more than one while a secret is being rotated).
// Errors never quote an argument, since arguments are secrets.
func New(name string, args []string) (Handshake, error) {
	switch name {
	case "slack", "graph", "dropbox":
		if len(args) != 0 {
			return nil, fmt.Errorf("handshake %s takes no arguments, got %d", name, len(args))
		}
		switch name {
		case "slack":
			return slackHandshake{}, nil
		case "graph":
			return graphHandshake{}, nil
		default:
			return dropboxHandshake{}, nil
		}
	case "meta":
		if len(args) != 1 {
			return nil, fmt.Errorf("handshake meta takes exactly one verify token, got %d arguments", len(args))
		}
		if err := checkSecret(args[0]); err != nil {
			return nil, fmt.Errorf("handshake meta: verify token %w", err)
		}
		return newMetaHandshake(args[0]), nil
	case "zoom":
		if len(args) == 0 {
			return nil, fmt.Errorf("handshake zoom takes the app's secret token (one or more, for rotation), got none")
		}
		for i, s := range args {
			if err := checkSecret(s); err != nil {
				return nil, fmt.Errorf("handshake zoom: secret token %d %w", i+1, err)
			}
		}
		return zoomHandshake{secrets: slices.Clone(args)}, nil
	default:
		return nil, fmt.Errorf("unknown handshake %q (want one of %v)", name, Names())
	}
}

// checkSecret bounds a configured token or secret. Its text is never part of
// the error.
func checkSecret(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("is empty")
	case len(s) > MaxChallengeLen:
		return fmt.Errorf("is longer than %d bytes", MaxChallengeLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return fmt.Errorf("contains a control character")
		}
	}
	return nil
}

// checkChallenge accepts a value to be echoed: 1 to MaxChallengeLen bytes of
// printable ASCII (space included: Graph's token reads "Validation: Testing
// client application reachability ..."), except < > & " ' ` and \. No
// provider documents any of those in a challenge (Graph: "Microsoft Graph
// never sends any value containing HTML or JavaScript code"), and without
// them an echo cannot open markup or break out of a quoted string even where
// a client ignores nosniff.
func checkChallenge(s string) error {
	if s == "" {
		return fmt.Errorf("is empty")
	}
	if len(s) > MaxChallengeLen {
		return fmt.Errorf("is longer than %d bytes", MaxChallengeLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return fmt.Errorf("contains a byte (0x%02x) outside printable ASCII", c)
		}
		switch c {
		case '<', '>', '&', '"', '\'', '`', '\\':
			return fmt.Errorf("contains %q", c)
		}
	}
	return nil
}

// nosniff is on every answer: Dropbox requires it for the echo, and on the
// others it costs nothing and keeps every echo inert.
func baseHeader() http.Header {
	return http.Header{"X-Content-Type-Options": {"nosniff"}}
}

// plainText is a 200 whose body is exactly the (checked) challenge.
func plainText(challenge string) Response {
	return Response{Status: http.StatusOK, ContentType: "text/plain", Header: baseHeader(), Body: []byte(challenge)}
}

// jsonOK is a 200 with v as JSON; encoding/json escapes < > & besides.
func jsonOK(v any) Response {
	b, err := json.Marshal(v)
	if err != nil {
		// Only string fields are ever marshalled here.
		panic(fmt.Sprintf("handshake: marshal answer: %v", err))
	}
	return Response{Status: http.StatusOK, ContentType: "application/json", Header: baseHeader(), Body: b}
}

// refuse answers a request that claims to be a handshake but cannot be
// answered, with the gateway's usual {"error":"…"}. msg never holds a secret
// or the refused value.
func refuse(status int, msg string) Response {
	b, _ := json.Marshal(map[string]string{"error": msg})
	return Response{Status: status, ContentType: "application/json", Header: baseHeader(), Body: b}
}

// jsonStringIs reports whether raw is the JSON string want. A missing value
// (nil raw) is not.
func jsonStringIs(raw json.RawMessage, want string) bool {
	var s string
	return raw != nil && json.Unmarshal(raw, &s) == nil && s == want
}

// queryParams parses the raw query itself, so that a malformed query is
// seen (r.URL.Query drops what it cannot parse).
func queryParams(r *http.Request) (url.Values, error) {
	if r.URL == nil {
		return url.Values{}, nil
	}
	return url.ParseQuery(r.URL.RawQuery)
}

// single returns the one value of key; a repeated parameter is ambiguous
// (which one would the provider expect back?) and is refused.
func single(q url.Values, key string) (string, error) {
	switch v := q[key]; len(v) {
	case 0:
		return "", fmt.Errorf("%s is missing", key)
	case 1:
		return v[0], nil
	default:
		return "", fmt.Errorf("%s is repeated", key)
	}
}
