package storage

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Signing secrets of http targets (TargetOptions.SigningSecret), in the
// Standard Webhooks shape: "whsec_" and the base64 of the key.

const (
	// SigningSecretPrefix starts every signing secret.
	SigningSecretPrefix = "whsec_"
	// SigningSecretGrace is how long a replaced secret keeps signing when
	// the API rotates it.
	SigningSecretGrace = 24 * time.Hour
	// GenerateSigningSecret, as an API request's signing_secret, asks the
	// gateway to make one (the admin package does, and shows it once).
	GenerateSigningSecret = "generate"
	// NoSigningSecret, as a change's signing_secret, removes the target's
	// secrets: left out, a change keeps them (the API cannot show them).
	NoSigningSecret = "none"
	// signingKeyMin and signingKeyMax bound a key, in bytes, as the
	// Standard Webhooks specification recommends.
	signingKeyMin, signingKeyMax = 24, 64
)

// DecodeSigningSecret is the key of a signing secret, "whsec_<base64>". Its
// errors never quote the secret: they end up in API answers and logs.
func DecodeSigningSecret(secret string) ([]byte, error) {
	if secret == RedactedValue {
		return nil, fmt.Errorf("%q stands for a stored secret, and the target has none: send the secret", RedactedValue)
	}
	if len(secret) < len(SigningSecretPrefix) || secret[:len(SigningSecretPrefix)] != SigningSecretPrefix {
		return nil, errors.New(`want "whsec_" and the base64 of a key`)
	}
	key, err := base64.StdEncoding.DecodeString(secret[len(SigningSecretPrefix):])
	if err != nil {
		return nil, errors.New(`the part after "whsec_" is not standard base64`)
	}
	if len(key) < signingKeyMin || len(key) > signingKeyMax {
		return nil, fmt.Errorf("a key of %d bytes: want %d to %d", len(key), signingKeyMin, signingKeyMax)
	}
	return key, nil
}

// NewSigningSecret makes a signing secret of a random 32-byte key.
func NewSigningSecret() (string, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("new signing secret: %w", err)
	}
	return SigningSecretPrefix + base64.StdEncoding.EncodeToString(key), nil
}

// validateSigning checks a target's signing secrets: well formed, and a
// previous one only beside a current one.
func validateSigning(o TargetOptions) error {
	if o.SigningSecret != "" {
		if _, err := DecodeSigningSecret(o.SigningSecret); err != nil {
			return fmt.Errorf("signing_secret: %w", err)
		}
	}
	if o.SigningSecretPrevious != "" {
		if o.SigningSecret == "" {
			return errors.New("signing_secret_previous without a signing_secret: the previous secret signs only beside a current one")
		}
		if _, err := DecodeSigningSecret(o.SigningSecretPrevious); err != nil {
			return fmt.Errorf("signing_secret_previous: %w", err)
		}
	} else if !o.SigningSecretPreviousUntil.IsZero() {
		return errors.New("signing_secret_previous_until without a signing_secret_previous")
	}
	return nil
}

// keepStoredSecrets gives the write-only options of a change, sent by a
// client that cannot read them, their stored values where it asks to, and
// rotates the signing secret (see TargetPatch). now is the time of the
// change.
func keepStoredSecrets(options, stored TargetOptions, now time.Time) (TargetOptions, error) {
	options, err := keepStoredHeadersAdded(options, stored.HeadersAdd)
	if err != nil {
		return TargetOptions{}, err
	}
	current, previous, until := options.SigningSecret, options.SigningSecretPrevious, options.SigningSecretPreviousUntil
	switch {
	case current == NoSigningSecret:
		if previous != "" || !until.IsZero() {
			return TargetOptions{}, fmt.Errorf("signing_secret %q removes the signing secrets: send no signing_secret_previous with it", NoSigningSecret)
		}
		options.SigningSecret = ""
		return options, nil
	case current == RedactedValue && stored.SigningSecret == "":
		return TargetOptions{}, fmt.Errorf("signing_secret: %q stands for a stored secret, and the target has none: send the secret", RedactedValue)
	case current == "" || current == RedactedValue || current == stored.SigningSecret:
		// The current secret stays: so do the previous one and its grace,
		// unless the change gives them.
		options.SigningSecret = stored.SigningSecret
		switch previous {
		case "", RedactedValue:
			if previous == RedactedValue && stored.SigningSecretPrevious == "" {
				return TargetOptions{}, fmt.Errorf("signing_secret_previous: %q stands for a stored secret, and the target has none: send the secret", RedactedValue)
			}
			options.SigningSecretPrevious = stored.SigningSecretPrevious
			if until.IsZero() {
				options.SigningSecretPreviousUntil = stored.SigningSecretPreviousUntil
			}
		}
	default:
		// A new secret: the one it replaces keeps signing for the grace
		// period, so that receivers can move to the new one.
		if previous == RedactedValue {
			return TargetOptions{}, fmt.Errorf("signing_secret_previous: %q with a new signing_secret: the stored previous secret is replaced by the stored current one; leave it out", RedactedValue)
		}
		if previous == "" && stored.SigningSecret != "" {
			options.SigningSecretPrevious = stored.SigningSecret
			if until.IsZero() {
				options.SigningSecretPreviousUntil = now.Add(SigningSecretGrace).UTC().Truncate(time.Second)
			}
		}
	}
	return options, nil
}

// keepStoredHeadersAdded gives the added headers of a change their stored
// values where it asks to, as keepStoredHeaders does for the set ones: none
// at all keeps every stored one; a value of RedactedValue keeps the stored
// value at the same place of the same header.
func keepStoredHeadersAdded(options TargetOptions, stored map[string][]string) (TargetOptions, error) {
	if options.HeadersAdd == nil {
		options.HeadersAdd = stored
		return options, nil
	}
	byName := make(map[string][]string, len(stored))
	for name, values := range stored {
		byName[http.CanonicalHeaderKey(name)] = values
	}
	added := make(map[string][]string, len(options.HeadersAdd))
	for name, values := range options.HeadersAdd {
		old := byName[http.CanonicalHeaderKey(name)]
		kept := make([]string, len(values))
		for i, value := range values {
			if value == RedactedValue {
				if i >= len(old) {
					return TargetOptions{}, fmt.Errorf("headers_add %s: %q stands for the stored value %d, and the target has no such value: send the value", name, RedactedValue, i+1)
				}
				value = old[i]
			}
			kept[i] = value
		}
		added[name] = kept
	}
	options.HeadersAdd = added
	return options, nil
}
