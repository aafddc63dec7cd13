package verify

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// twilioVerifier: X-Twilio-Signature: base64 HMAC-SHA1(auth token, URL +
// the POST form parameters sorted by name, each name followed by its value).
// Twilio signs the URL it was configured with, so Request.URL must be the URL
// as Twilio addressed it. Like Twilio's own libraries, the URL is also tried
// without its port and with the scheme's default port, because Twilio may
// sign either. A JSON body is signed instead through a bodySHA256 query
// parameter: the URL alone is signed and the body must hash to that value.
// A body that is neither a form nor covered by bodySHA256 is refused: no
// signature would cover it. (A form is signed as parsed parameters, so its
// encoding and the order of its fields are not covered; that is Twilio's
// scheme.) A Twilio account has a primary and a secondary auth token: give
// both while promoting one.
type twilioVerifier struct {
	keys [][]byte
}

// maxURLLen bounds the URL Twilio's scheme signs.
const maxURLLen = 8192

// ErrNoURL is returned (not wrapping ErrUnverified) when a Twilio request is
// verified without Request.URL: a fault of the caller, not of the request.
var ErrNoURL = errors.New("verify twilio: Request.URL is required and was not given")

func (v *twilioVerifier) Scheme() string   { return Twilio }
func (v *twilioVerifier) String() string   { return redacted(Twilio, len(v.keys)) }
func (v *twilioVerifier) GoString() string { return v.String() }

func (v *twilioVerifier) Verify(r Request) error {
	const name = "X-Twilio-Signature"
	if r.URL == "" {
		return ErrNoURL
	}
	value, err := header(&r, Twilio, name)
	if err != nil {
		return err
	}
	sig, ok := decodeSignature(value, "base64", sha1.Size)
	if !ok {
		return refuse(Twilio, ReasonMalformed, "header "+name+" is not a base64 20-byte signature")
	}
	if len(r.URL) > maxURLLen {
		return refuse(Twilio, ReasonMalformed, fmt.Sprintf("request URL longer than %d bytes", maxURLLen))
	}
	urls, ok := twilioURLVariants(r.URL)
	if !ok {
		return refuse(Twilio, ReasonMalformed, "request URL is not absolute")
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		return refuse(Twilio, ReasonMalformed, "request URL does not parse")
	}
	var params string
	if bodyHash := u.Query().Get("bodySHA256"); bodyHash != "" {
		// The hash is no secret; the comparison is constant-time all the same.
		sum := sha256.Sum256(r.Body)
		if subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(strings.ToLower(bodyHash))) != 1 {
			return refuse(Twilio, ReasonMismatch, "body does not match the URL's bodySHA256")
		}
	} else if r.Method == http.MethodPost && isForm(r.Header) {
		if params, err = twilioParams(r.Body); err != nil {
			return err
		}
	} else if len(r.Body) > 0 {
		// Twilio signs a body either as form parameters or through
		// bodySHA256. Any other body would be covered by no signature.
		return refuse(Twilio, ReasonMalformed, "body is neither a form nor covered by bodySHA256")
	}
	expected := make([][]byte, 0, len(v.keys)*len(urls))
	for _, k := range v.keys {
		for _, u := range urls {
			expected = append(expected, mac(sha1.New, k, []byte(u), []byte(params)))
		}
	}
	if !anyEqual(expected, [][]byte{sig}) {
		return refuse(Twilio, ReasonMismatch, "signature in header "+name+" does not match")
	}
	return nil
}

func isForm(h http.Header) bool {
	mediaType, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && mediaType == "application/x-www-form-urlencoded"
}

// twilioParams is the signed form of the body's parameters: names sorted, and
// each name's distinct values sorted, as name+value with no separator (the
// order and the de-duplication of Twilio's published vectors).
func twilioParams(body []byte) (string, error) {
	if len(body) == 0 {
		return "", nil
	}
	if n := strings.Count(string(body), "&") + 1; n > maxFormParams {
		return "", refuse(Twilio, ReasonMalformed, fmt.Sprintf("body has more than %d form parameters", maxFormParams))
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return "", refuse(Twilio, ReasonMalformed, "body is not a valid form")
	}
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(form)) {
		values := slices.Compact(slices.Sorted(slices.Values(form[name])))
		for _, value := range values {
			b.WriteString(name)
			b.WriteString(value)
		}
	}
	return b.String(), nil
}

// twilioURLVariants returns the URL as given, then the same URL without its
// port, or with the scheme's default port when it has none. It splices the
// text instead of re-serialising a parsed URL, which could re-escape the path
// or query and so change what was signed.
func twilioURLVariants(raw string) ([]string, bool) {
	schemeEnd := strings.Index(raw, "://")
	if schemeEnd <= 0 {
		return nil, false
	}
	scheme := strings.ToLower(raw[:schemeEnd])
	rest := raw[schemeEnd+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	prefix := raw[:schemeEnd+3]
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		prefix += authority[:at+1]
		authority = authority[at+1:]
	}
	host, port := authority, ""
	if i := strings.LastIndex(authority, ":"); i >= 0 && !strings.Contains(authority[i:], "]") {
		host, port = authority[:i], authority[i+1:]
	}
	if host == "" {
		return nil, false
	}
	variants := []string{raw}
	if port != "" {
		variants = append(variants, prefix+host+tail)
	} else if def := map[string]string{"https": "443", "http": "80"}[scheme]; def != "" {
		variants = append(variants, prefix+host+":"+def+tail)
	}
	return variants, true
}
