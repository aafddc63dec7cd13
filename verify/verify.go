// Package verify owns the inbound authenticity checks of an entrypoint: given a
// provider's verification scheme and the secrets it shares with us, it decides
// whether a request really comes from that provider before anything is stored.
//
// It knows nothing of Caddy, storage or HTTP serving. The handler builds a
// Request from what it received and maps ErrUnverified to 401. Every
// comparison of a signature or credential is constant-time; every refusal is an
// *Error that names the scheme and the reason, and never a secret nor the
// signature we expected; what a request may make us parse is bounded, so a
// hostile request costs little more than reading its headers.
package verify

import (
	"crypto/hmac"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// The scheme names, as written after `verify` in the Caddyfile and in the API.
const (
	GitHub           = "github"
	Stripe           = "stripe"
	StandardWebhooks = "standard_webhooks"
	Shopify          = "shopify"
	Slack            = "slack"
	Twilio           = "twilio"
	HMAC             = "hmac"
	BasicAuth        = "basic_auth"
	Bearer           = "bearer"
)

// Schemes lists every scheme New accepts, in documentation order.
func Schemes() []string {
	return []string{GitHub, Stripe, StandardWebhooks, Shopify, Slack, Twilio, HMAC, BasicAuth, Bearer}
}

// DefaultTolerance is how far a signed timestamp may be from now, in either
// direction, when Options.Tolerance is zero. Five minutes is what Stripe's,
// Slack's and the Standard Webhooks libraries use.
const DefaultTolerance = 5 * time.Minute

// Bounds on configuration and on what a request can make us parse.
const (
	// MaxSecrets bounds the secrets of one verifier: each costs an HMAC over
	// the whole body on every request, and rotation needs two or three.
	MaxSecrets = 8
	// maxSecretLen bounds one configured secret (bytes, as written).
	maxSecretLen = 1024
	// maxHeaderLen bounds any header we parse. Real signature headers are
	// under 200 bytes, a Stripe or Standard Webhooks header during a
	// rotation under 500.
	maxHeaderLen = 4096
	// maxSignatures bounds the signatures one header may carry.
	maxSignatures = 16
	// maxTimestampDigits: Unix seconds have 10 digits until the year 2286.
	maxTimestampDigits = 12
	// maxFormParams bounds the form parameters Twilio's scheme signs.
	maxFormParams = 1000
)

// ErrUnverified is wrapped by every refusal: the request did not prove that it
// comes from the provider. The handler answers it with 401 and stores nothing.
var ErrUnverified = errors.New("request not verified")

// Reason says why a request was refused; it is short and stable, fit for a
// metric label.
type Reason string

const (
	ReasonMissing   Reason = "missing"   // a header the scheme needs is absent
	ReasonMalformed Reason = "malformed" // present but not in the scheme's shape, or over a bound
	ReasonMismatch  Reason = "mismatch"  // well-formed, but no secret produces it
	ReasonTooOld    Reason = "too_old"   // signed timestamp older than the tolerance
	ReasonTooNew    Reason = "too_new"   // signed timestamp further in the future than the tolerance
)

// Error is a refusal. Its text names the scheme, the reason and a detail built
// only from header names and fixed words: never a secret, an expected
// signature, or the request's own header values (which an attacker chooses
// and which would end up in logs).
type Error struct {
	Scheme string
	Reason Reason
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("verify %s: %s", e.Scheme, e.Reason)
	}
	return fmt.Sprintf("verify %s: %s: %s", e.Scheme, e.Reason, e.Detail)
}

// Unwrap makes errors.Is(err, ErrUnverified) true for every refusal.
func (e *Error) Unwrap() error { return ErrUnverified }

func refuse(scheme string, reason Reason, detail string) error {
	return &Error{Scheme: scheme, Reason: reason, Detail: detail}
}

// Request is what a scheme may look at: the request as the provider sent it.
type Request struct {
	// Method is the HTTP method (Twilio signs a POST's form parameters).
	Method string
	// URL is the absolute URL the provider addressed, as it addressed it:
	// scheme, host (and port if it gave one), path and query, e.g.
	// "https://hooks.example.com/hooks/sms?x=1". Only Twilio signs it; behind
	// a TLS-terminating proxy it must still say https.
	URL string
	// Header holds the request's headers (canonical keys, as net/http gives them).
	Header http.Header
	// Body is the complete raw body, exactly as received.
	Body []byte
	// Now is the time timestamps are checked against; zero means time.Now().
	Now time.Time
}

func (r *Request) now() time.Time {
	if r.Now.IsZero() {
		return time.Now()
	}
	return r.Now
}

// Verifier checks requests for one entrypoint. It is safe for concurrent use.
type Verifier interface {
	// Scheme is the scheme's name (one of Schemes()), to record which passed.
	Scheme() string
	// Verify returns nil when the request is authentic, an *Error wrapping
	// ErrUnverified when it is not, and another error only when the caller
	// gave it too little to decide (Twilio without Request.URL).
	Verify(r Request) error
}

// Options are the settings of a scheme beyond its secrets. An option that
// the scheme does not use is a configuration error, not silently ignored.
type Options struct {
	// Tolerance is how far a signed timestamp may be from now, in either
	// direction (stripe, slack, standard_webhooks). Zero means DefaultTolerance.
	Tolerance time.Duration
	// Header names the header carrying the signature (hmac; required).
	Header string
	// Algorithm is sha1, sha256 or sha512 (hmac; default sha256).
	Algorithm string
	// Encoding is hex or base64 (hmac; default hex).
	Encoding string
	// Prefix is text before the encoded signature, e.g. "sha256=" (hmac).
	Prefix string
}

// New builds the verifier of a scheme from its configuration. secrets are the
// scheme's arguments: one or more signing secrets (any one passing is enough,
// so that a provider's secret can be rotated), the user and password of
// basic_auth, or the tokens of bearer. Errors name the scheme and the
// argument's position, never its value.
func New(scheme string, secrets []string, opts Options) (Verifier, error) {
	if !slices.Contains(Schemes(), scheme) {
		return nil, fmt.Errorf("verify: unknown scheme %q (want one of %s)", scheme, strings.Join(Schemes(), ", "))
	}
	if err := checkArgs(scheme, secrets); err != nil {
		return nil, err
	}
	timestamped := scheme == Stripe || scheme == Slack || scheme == StandardWebhooks
	if opts.Tolerance < 0 {
		return nil, fmt.Errorf("verify %s: tolerance must not be negative", scheme)
	}
	if opts.Tolerance != 0 && !timestamped {
		return nil, fmt.Errorf("verify %s: the scheme signs no timestamp, so tolerance does not apply", scheme)
	}
	if scheme != HMAC && (opts.Header != "" || opts.Algorithm != "" || opts.Encoding != "" || opts.Prefix != "") {
		return nil, fmt.Errorf("verify %s: header, algorithm, encoding and prefix apply only to hmac", scheme)
	}
	tolerance := opts.Tolerance
	if tolerance == 0 {
		tolerance = DefaultTolerance
	}
	switch scheme {
	case GitHub:
		return newBodyHMAC(GitHub, secrets, "X-Hub-Signature-256", "sha256", "hex", "sha256=")
	case Shopify:
		return newBodyHMAC(Shopify, secrets, "X-Shopify-Hmac-Sha256", "sha256", "base64", "")
	case HMAC:
		algorithm, encoding := opts.Algorithm, opts.Encoding
		if algorithm == "" {
			algorithm = "sha256"
		}
		if encoding == "" {
			encoding = "hex"
		}
		if err := checkHeaderName(opts.Header); err != nil {
			return nil, fmt.Errorf("verify hmac: header: %w", err)
		}
		if len(opts.Prefix) > 64 || strings.ContainsFunc(opts.Prefix, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
			return nil, fmt.Errorf("verify hmac: prefix must be at most 64 printable ASCII characters without spaces")
		}
		return newBodyHMAC(HMAC, secrets, opts.Header, algorithm, encoding, opts.Prefix)
	case Stripe:
		return &stripeVerifier{keys: rawKeys(secrets), tolerance: tolerance}, nil
	case Slack:
		return &slackVerifier{keys: rawKeys(secrets), tolerance: tolerance}, nil
	case StandardWebhooks:
		keys, err := standardWebhooksKeys(secrets)
		if err != nil {
			return nil, err
		}
		return &standardWebhooksVerifier{keys: keys, tolerance: tolerance}, nil
	case Twilio:
		return &twilioVerifier{keys: rawKeys(secrets)}, nil
	case BasicAuth:
		if strings.Contains(secrets[0], ":") {
			return nil, fmt.Errorf("verify basic_auth: the user must not contain ':' (Basic credentials cannot carry it)")
		}
		return newBasicAuth(secrets[0], secrets[1]), nil
	default: // Bearer: the list above is exhaustive.
		return newBearer(secrets), nil
	}
}

func checkArgs(scheme string, secrets []string) error {
	if scheme == BasicAuth {
		if len(secrets) != 2 {
			return fmt.Errorf("verify basic_auth: want 2 arguments (user, password), got %d", len(secrets))
		}
	} else if len(secrets) < 1 || len(secrets) > MaxSecrets {
		return fmt.Errorf("verify %s: want 1 to %d secrets, got %d", scheme, MaxSecrets, len(secrets))
	}
	for i, s := range secrets {
		if s == "" {
			return fmt.Errorf("verify %s: argument %d is empty", scheme, i+1)
		}
		if len(s) > maxSecretLen {
			return fmt.Errorf("verify %s: argument %d is longer than %d bytes", scheme, i+1, maxSecretLen)
		}
	}
	return nil
}

func checkHeaderName(name string) error {
	if name == "" {
		return errors.New("required")
	}
	if len(name) > 128 {
		return errors.New("longer than 128 bytes")
	}
	for _, c := range []byte(name) {
		// RFC 9110 token characters.
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return fmt.Errorf("%q is not a valid header name", name)
		}
	}
	return nil
}

func rawKeys(secrets []string) [][]byte {
	keys := make([][]byte, len(secrets))
	for i, s := range secrets {
		keys[i] = []byte(s)
	}
	return keys
}

// header returns the one value of a header the scheme needs. A header sent
// twice is refused: which copy a proxy or a provider library would read is not
// something to guess about when authenticating.
func header(r *Request, scheme, name string) (string, error) {
	values := r.Header.Values(name)
	switch {
	case len(values) == 0 || values[0] == "":
		return "", refuse(scheme, ReasonMissing, "header "+name)
	case len(values) > 1:
		return "", refuse(scheme, ReasonMalformed, "header "+name+" sent more than once")
	case len(values[0]) > maxHeaderLen:
		return "", refuse(scheme, ReasonMalformed, fmt.Sprintf("header %s longer than %d bytes", name, maxHeaderLen))
	}
	return values[0], nil
}

// checkTimestamp parses a signed Unix-seconds timestamp and refuses it when it
// is further than tolerance from now, in the past or in the future: a
// captured request cannot be replayed later, nor one signed ahead be kept.
func checkTimestamp(r *Request, scheme, name, value string, tolerance time.Duration) error {
	if value == "" || len(value) > maxTimestampDigits {
		return refuse(scheme, ReasonMalformed, name+" is not a Unix time")
	}
	var ts int64
	for _, c := range []byte(value) {
		if c < '0' || c > '9' {
			return refuse(scheme, ReasonMalformed, name+" is not a Unix time")
		}
		ts = ts*10 + int64(c-'0') // at most 12 digits: cannot overflow
	}
	// Both sides are bounded (ts < 1e12, now within int64 seconds), so the
	// difference cannot overflow.
	diff := r.now().Unix() - ts
	limit := int64(tolerance / time.Second)
	switch {
	case diff > limit:
		return refuse(scheme, ReasonTooOld, fmt.Sprintf("%s older than %s", name, tolerance))
	case -diff > limit:
		return refuse(scheme, ReasonTooNew, fmt.Sprintf("%s more than %s in the future", name, tolerance))
	}
	return nil
}

// macsComputed counts HMAC computations, so that tests can prove a hostile
// request was refused before any hashing of its body.
var macsComputed atomic.Int64

// mac computes HMAC(key, parts...).
func mac(newHash func() hash.Hash, key []byte, parts ...[]byte) []byte {
	macsComputed.Add(1)
	m := hmac.New(newHash, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// anyEqual reports whether one of the candidates equals one of the expected
// MACs, comparing every pair in constant time and without stopping at the
// first match, so that timing tells nothing about which secret or position.
func anyEqual(expected, candidates [][]byte) bool {
	found := 0
	for _, e := range expected {
		for _, c := range candidates {
			found |= subtle.ConstantTimeCompare(e, c)
		}
	}
	return found == 1
}

// redacted is how a verifier prints: the scheme and the number of secrets, so
// that logging one by mistake (%v, %#v, zap.Any) shows no secret.
func redacted(scheme string, n int) string {
	return fmt.Sprintf("verify.Verifier{Scheme: %q, Secrets: %d (redacted)}", scheme, n)
}
