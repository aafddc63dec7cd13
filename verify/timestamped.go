package verify

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"time"
)

// The schemes here sign a timestamp with the body, so that a captured request
// cannot be replayed: the timestamp is checked against the tolerance before
// any MAC is computed, which also makes a stale or hostile request cheap.

// stripeVerifier: Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>[,v1=…][,v0=…].
// Stripe sends several v1 entries while an endpoint secret is being rolled.
// The secret (whsec_…) is used as written, not decoded.
type stripeVerifier struct {
	keys      [][]byte
	tolerance time.Duration
}

func (v *stripeVerifier) Scheme() string   { return Stripe }
func (v *stripeVerifier) String() string   { return redacted(Stripe, len(v.keys)) }
func (v *stripeVerifier) GoString() string { return v.String() }

func (v *stripeVerifier) Verify(r Request) error {
	const name = "Stripe-Signature"
	value, err := header(&r, Stripe, name)
	if err != nil {
		return err
	}
	// t, v1 entries and the legacy v0 ones: anything longer is not Stripe's.
	if strings.Count(value, ",") >= 2*maxSignatures {
		return refuse(Stripe, ReasonMalformed, "header "+name+" has too many entries")
	}
	var timestamp string
	var signatures [][]byte
	for item := range strings.SplitSeq(value, ",") {
		key, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return refuse(Stripe, ReasonMalformed, "header "+name+" has an entry without '='")
		}
		switch key {
		case "t":
			if timestamp != "" {
				return refuse(Stripe, ReasonMalformed, "header "+name+" has more than one t")
			}
			timestamp = val
		case "v1":
			// Like Stripe's libraries, skip an entry that is not a signature
			// rather than fail: another v1 may still match.
			if sig, ok := decodeSignature(val, "hex", sha256.Size); ok {
				signatures = append(signatures, sig)
			}
		}
	}
	if timestamp == "" {
		return refuse(Stripe, ReasonMalformed, "header "+name+" has no t")
	}
	if len(signatures) == 0 {
		return refuse(Stripe, ReasonMalformed, "header "+name+" has no v1 signature")
	}
	if err := checkTimestamp(&r, Stripe, name+" t", timestamp, v.tolerance); err != nil {
		return err
	}
	expected := make([][]byte, len(v.keys))
	for i, k := range v.keys {
		expected[i] = mac(sha256.New, k, []byte(timestamp), []byte("."), r.Body)
	}
	if !anyEqual(expected, signatures) {
		return refuse(Stripe, ReasonMismatch, "no v1 signature in header "+name+" matches")
	}
	return nil
}

// slackVerifier: X-Slack-Request-Timestamp: <unix>,
// X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret, "v0:<timestamp>:<body>")>.
type slackVerifier struct {
	keys      [][]byte
	tolerance time.Duration
}

func (v *slackVerifier) Scheme() string   { return Slack }
func (v *slackVerifier) String() string   { return redacted(Slack, len(v.keys)) }
func (v *slackVerifier) GoString() string { return v.String() }

func (v *slackVerifier) Verify(r Request) error {
	const tsName, sigName = "X-Slack-Request-Timestamp", "X-Slack-Signature"
	timestamp, err := header(&r, Slack, tsName)
	if err != nil {
		return err
	}
	value, err := header(&r, Slack, sigName)
	if err != nil {
		return err
	}
	encoded, ok := strings.CutPrefix(value, "v0=")
	if !ok {
		return refuse(Slack, ReasonMalformed, "header "+sigName+" is not v0=<hex>")
	}
	sig, ok := decodeSignature(encoded, "hex", sha256.Size)
	if !ok {
		return refuse(Slack, ReasonMalformed, "header "+sigName+" is not v0=<hex>")
	}
	if err := checkTimestamp(&r, Slack, tsName, timestamp, v.tolerance); err != nil {
		return err
	}
	expected := make([][]byte, len(v.keys))
	for i, k := range v.keys {
		expected[i] = mac(sha256.New, k, []byte("v0:"), []byte(timestamp), []byte(":"), r.Body)
	}
	if !anyEqual(expected, [][]byte{sig}) {
		return refuse(Slack, ReasonMismatch, "signature in header "+sigName+" does not match")
	}
	return nil
}

// standardWebhooksVerifier: webhook-id, webhook-timestamp and
// webhook-signature: "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>", several
// separated by spaces; the key is the base64 after "whsec_". Svix, whose
// scheme the specification standardised, sends the same headers named svix-*;
// they are read when webhook-id is absent.
type standardWebhooksVerifier struct {
	keys      [][]byte
	tolerance time.Duration
}

// maxMessageIDLen bounds webhook-id; the specification's ids are ~30 bytes.
const maxMessageIDLen = 256

func standardWebhooksKeys(secrets []string) ([][]byte, error) {
	keys := make([][]byte, len(secrets))
	for i, s := range secrets {
		// The reference libraries accept the key with or without its prefix.
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
		if err != nil {
			return nil, fmt.Errorf("verify standard_webhooks: secret %d is not whsec_ followed by base64", i+1)
		}
		if len(key) == 0 {
			return nil, fmt.Errorf("verify standard_webhooks: secret %d holds an empty key", i+1)
		}
		keys[i] = key
	}
	return keys, nil
}

func (v *standardWebhooksVerifier) Scheme() string   { return StandardWebhooks }
func (v *standardWebhooksVerifier) String() string   { return redacted(StandardWebhooks, len(v.keys)) }
func (v *standardWebhooksVerifier) GoString() string { return v.String() }

func (v *standardWebhooksVerifier) Verify(r Request) error {
	family := "webhook"
	if len(r.Header.Values("Webhook-Id")) == 0 && len(r.Header.Values("Svix-Id")) > 0 {
		family = "svix"
	}
	idName, tsName, sigName := family+"-id", family+"-timestamp", family+"-signature"
	id, err := header(&r, StandardWebhooks, idName)
	if err != nil {
		return err
	}
	if len(id) > maxMessageIDLen {
		return refuse(StandardWebhooks, ReasonMalformed, fmt.Sprintf("header %s longer than %d bytes", idName, maxMessageIDLen))
	}
	timestamp, err := header(&r, StandardWebhooks, tsName)
	if err != nil {
		return err
	}
	value, err := header(&r, StandardWebhooks, sigName)
	if err != nil {
		return err
	}
	if strings.Count(value, " ") >= maxSignatures {
		return refuse(StandardWebhooks, ReasonMalformed, "header "+sigName+" has too many signatures")
	}
	var signatures [][]byte
	for item := range strings.SplitSeq(value, " ") {
		version, encoded, ok := strings.Cut(item, ",")
		// Other versions (v1a is an asymmetric signature) are not ours to
		// check; an undecodable v1 is skipped as the reference libraries do.
		if !ok || version != "v1" {
			continue
		}
		if sig, ok := decodeSignature(encoded, "base64", sha256.Size); ok {
			signatures = append(signatures, sig)
		}
	}
	if len(signatures) == 0 {
		return refuse(StandardWebhooks, ReasonMalformed, "header "+sigName+" has no v1 signature")
	}
	if err := checkTimestamp(&r, StandardWebhooks, tsName, timestamp, v.tolerance); err != nil {
		return err
	}
	expected := make([][]byte, len(v.keys))
	for i, k := range v.keys {
		expected[i] = mac(sha256.New, k, []byte(id), []byte("."), []byte(timestamp), []byte("."), r.Body)
	}
	if !anyEqual(expected, signatures) {
		return refuse(StandardWebhooks, ReasonMismatch, "no v1 signature in header "+sigName+" matches")
	}
	return nil
}
