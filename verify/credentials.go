package verify

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strings"
)

// Credentials sent in the Authorization header, for providers that can only
// be given a URL with a password or a token. Only SHA-256 digests of the
// configured values are kept and compared, so the comparison takes the same
// time whatever the lengths, and the values themselves stay out of memory
// dumps of the verifier.

// basicAuthVerifier: Authorization: Basic base64(user:password).
type basicAuthVerifier struct {
	user, password [sha256.Size]byte
}

func newBasicAuth(user, password string) *basicAuthVerifier {
	return &basicAuthVerifier{user: sha256.Sum256([]byte(user)), password: sha256.Sum256([]byte(password))}
}

func (v *basicAuthVerifier) Scheme() string   { return BasicAuth }
func (v *basicAuthVerifier) String() string   { return redacted(BasicAuth, 2) }
func (v *basicAuthVerifier) GoString() string { return v.String() }

func (v *basicAuthVerifier) Verify(r Request) error {
	credentials, err := authorization(&r, BasicAuth, "Basic")
	if err != nil {
		return err
	}
	decoded, err := base64.StdEncoding.DecodeString(credentials)
	if err != nil {
		return refuse(BasicAuth, ReasonMalformed, "header Authorization is not Basic base64(user:password)")
	}
	user, password, ok := strings.Cut(string(decoded), ":")
	if !ok {
		return refuse(BasicAuth, ReasonMalformed, "header Authorization is not Basic base64(user:password)")
	}
	gotUser, gotPassword := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	// Both compared, always: which of the two was wrong is not told by timing.
	if subtle.ConstantTimeCompare(gotUser[:], v.user[:])&subtle.ConstantTimeCompare(gotPassword[:], v.password[:]) != 1 {
		return refuse(BasicAuth, ReasonMismatch, "user or password does not match")
	}
	return nil
}

// bearerVerifier: Authorization: Bearer <token>, any of the configured tokens.
type bearerVerifier struct {
	tokens [][]byte
}

func newBearer(tokens []string) *bearerVerifier {
	v := &bearerVerifier{}
	for _, t := range tokens {
		sum := sha256.Sum256([]byte(t))
		v.tokens = append(v.tokens, sum[:])
	}
	return v
}

func (v *bearerVerifier) Scheme() string   { return Bearer }
func (v *bearerVerifier) String() string   { return redacted(Bearer, len(v.tokens)) }
func (v *bearerVerifier) GoString() string { return v.String() }

func (v *bearerVerifier) Verify(r Request) error {
	token, err := authorization(&r, Bearer, "Bearer")
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(token))
	if !anyEqual(v.tokens, [][]byte{sum[:]}) {
		return refuse(Bearer, ReasonMismatch, "token does not match")
	}
	return nil
}

// authorization returns the credentials of an Authorization header of the
// given auth-scheme (compared without regard to case, as RFC 9110 says).
func authorization(r *Request, scheme, authScheme string) (string, error) {
	value, err := header(r, scheme, "Authorization")
	if err != nil {
		return "", err
	}
	prefix := authScheme + " "
	if len(value) < len(prefix) || !strings.EqualFold(value[:len(prefix)], prefix) {
		return "", refuse(scheme, ReasonMalformed, "header Authorization is not "+authScheme)
	}
	credentials := strings.TrimLeft(value[len(prefix):], " ")
	if credentials == "" {
		return "", refuse(scheme, ReasonMalformed, "header Authorization has no credentials")
	}
	return credentials, nil
}
