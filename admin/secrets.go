package admin

import (
	"net/http"
	"strings"

	"github.com/webhooker/caddy-webhooker/storage"
)

// Secrets are write-only: the API and the UI show that they exist, never
// what they are. What storage keeps and what the engine forwards is not
// changed: only what is read back.

// credentialHeaders are the headers of a received event that carry a
// sender's credentials, by canonical name. Names ending in one of
// credentialSuffixes are masked too.
var credentialHeaders = map[string]bool{
	"Authorization":       true,
	"Proxy-Authorization": true,
	"Cookie":              true,
	"Set-Cookie":          true,
	"X-Api-Key":           true,
	"X-Auth-Token":        true,
}

var credentialSuffixes = []string{"-Token", "-Secret", "-Key", "-Password"}

// isCredentialHeader tells whether a header of a received event holds a
// credential and is shown masked.
func isCredentialHeader(name string) bool {
	name = http.CanonicalHeaderKey(name)
	if credentialHeaders[name] {
		return true
	}
	for _, suffix := range credentialSuffixes {
		if strings.HasSuffix(name, suffix) {
			return true
		}
	}
	return false
}

// maskCredentials is h with the values of credential headers replaced by
// storage.RedactedValue, one for each value, so that a reader still sees
// which were sent and how many times. h itself is not changed.
func maskCredentials(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for name, values := range h {
		if !isCredentialHeader(name) {
			out[name] = values
			continue
		}
		masked := make([]string, len(values))
		for i := range masked {
			masked[i] = storage.RedactedValue
		}
		out[name] = masked
	}
	return out
}

// maskTargetSecrets is options with every header value it sets or adds and
// its signing secrets replaced by storage.RedactedValue: target headers are
// where operators and tenants put the receiver's credentials, and a signing
// secret lets whoever holds it forge deliveries. Sent back unchanged in a
// PATCH, the mask keeps the stored values (see storage.TargetPatch).
func maskTargetSecrets(options storage.TargetOptions) storage.TargetOptions {
	if options.Headers != nil {
		masked := make(map[string]string, len(options.Headers))
		for name := range options.Headers {
			masked[name] = storage.RedactedValue
		}
		options.Headers = masked
	}
	if options.HeadersAdd != nil {
		masked := make(map[string][]string, len(options.HeadersAdd))
		for name, values := range options.HeadersAdd {
			masked[name] = make([]string, len(values))
			for i := range values {
				masked[name][i] = storage.RedactedValue
			}
		}
		options.HeadersAdd = masked
	}
	if options.SigningSecret != "" {
		options.SigningSecret = storage.RedactedValue
	}
	if options.SigningSecretPrevious != "" {
		options.SigningSecretPrevious = storage.RedactedValue
	}
	return options
}

// maskEntrypointSecrets is options with every verify secret and handshake
// argument replaced by storage.RedactedValue, one for each, so that a reader
// sees the schemes and how many secrets each has (a rotation under way),
// never the secrets. Sent back in a PATCH, a mask keeps the stored value
// at its position (see storage.EntrypointPatch). options is not changed.
func maskEntrypointSecrets(options storage.EntrypointOptions) storage.EntrypointOptions {
	if options.Verify != nil {
		masked := make([]storage.VerifyRule, len(options.Verify))
		for i, rule := range options.Verify {
			rule.Secrets = redacted(len(rule.Secrets))
			masked[i] = rule
		}
		options.Verify = masked
	}
	if options.Handshake != nil {
		hs := *options.Handshake
		if hs.Args != nil {
			hs.Args = redacted(len(hs.Args))
		}
		options.Handshake = &hs
	}
	return options
}

func redacted(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = storage.RedactedValue
	}
	return out
}

// generateSigningSecret makes the signing secret that options ask the
// gateway to generate (signing_secret "generate"), puts it in options, and
// returns it to be shown once, in the answer to this request; "" when none
// is asked for.
func generateSigningSecret(options *storage.TargetOptions) (string, error) {
	if options == nil || options.SigningSecret != storage.GenerateSigningSecret {
		return "", nil
	}
	secret, err := storage.NewSigningSecret()
	if err != nil {
		return "", err
	}
	options.SigningSecret = secret
	return secret, nil
}
