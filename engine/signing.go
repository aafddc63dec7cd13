package engine

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// Outbound signing by Standard Webhooks (https://www.standardwebhooks.com):
// a target with a signing secret sends, with every attempt,
//
//	webhook-id:        MessageID(event, target), the same for every attempt
//	webhook-timestamp: the attempt's time, Unix seconds
//	webhook-signature: v1,<base64 HMAC-SHA256(key, id "." timestamp "." body)>
//
// with one v1 signature per secret in force, space-separated. A provider's
// own signature carries the provider's timestamp, which receivers refuse
// after a few minutes: a durable gateway that retries for hours re-signs.

// MessageID is the webhook-id of every delivery of event eventID to target
// targetID: the same across retries and manual redeliveries (each a
// delivery of its own), so that a receiver can de-duplicate on it. Derived,
// not stored, so that rows written before it need no migration; a
// declared target's id is derived from its name, so its message ids
// survive restarts too.
func MessageID(eventID, targetID string) string {
	sum := sha256.Sum256([]byte("webhooker message id\x00" + eventID + "\x00" + targetID))
	return "msg_" + hex.EncodeToString(sum[:16])
}

// signingKey is a secret in force, decoded.
type signingKey []byte

// signingKeys are the keys a target signs with at now: its secret, and the
// previous one while its grace lasts. The secrets were validated when the
// target was stored; one that does not decode (a row written by hand) is an
// error, never a silently unsigned delivery.
func signingKeys(o storage.TargetOptions, now time.Time) ([]signingKey, error) {
	if o.SigningSecret == "" {
		return nil, nil
	}
	key, err := storage.DecodeSigningSecret(o.SigningSecret)
	if err != nil {
		return nil, fmt.Errorf("the target's signing_secret: %w", err)
	}
	keys := []signingKey{key}
	if o.SigningSecretPrevious != "" && (o.SigningSecretPreviousUntil.IsZero() || now.Before(o.SigningSecretPreviousUntil)) {
		prev, err := storage.DecodeSigningSecret(o.SigningSecretPrevious)
		if err != nil {
			return nil, fmt.Errorf("the target's signing_secret_previous: %w", err)
		}
		keys = append(keys, prev)
	}
	return keys, nil
}

// signature is the webhook-signature header of a message: one
// "v1,<base64>" per key, space-separated. body is read to its end.
func signature(keys []signingKey, msgID string, timestamp int64, body io.Reader) (string, error) {
	macs := make([]hash.Hash, len(keys))
	writers := make([]io.Writer, len(keys))
	prefix := msgID + "." + strconv.FormatInt(timestamp, 10) + "."
	for i, key := range keys {
		macs[i] = hmac.New(sha256.New, key)
		_, _ = io.WriteString(macs[i], prefix) // a hash.Hash never fails a write
		writers[i] = macs[i]
	}
	if _, err := io.Copy(io.MultiWriter(writers...), body); err != nil {
		return "", fmt.Errorf("read the body to sign it: %w", err)
	}
	sigs := make([]string, len(macs))
	for i, mac := range macs {
		sigs[i] = "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	}
	return strings.Join(sigs, " "), nil
}
