package verify

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
)

// bodyHMACVerifier checks one header holding an HMAC of the raw body, the
// shape GitHub (X-Hub-Signature-256: sha256=<hex>), Shopify
// (X-Shopify-Hmac-Sha256: <base64>) and the configurable hmac scheme share.
type bodyHMACVerifier struct {
	scheme   string
	header   string
	prefix   string
	encoding string
	newHash  func() hash.Hash
	size     int
	keys     [][]byte
}

var algorithms = map[string]func() hash.Hash{
	"sha1":   sha1.New,
	"sha256": sha256.New,
	"sha512": sha512.New,
}

func newBodyHMAC(scheme string, secrets []string, headerName, algorithm, encoding, prefix string) (Verifier, error) {
	newHash, ok := algorithms[algorithm]
	if !ok {
		return nil, fmt.Errorf("verify %s: unknown algorithm %q (want sha1, sha256 or sha512)", scheme, algorithm)
	}
	if encoding != "hex" && encoding != "base64" {
		return nil, fmt.Errorf("verify %s: unknown encoding %q (want hex or base64)", scheme, encoding)
	}
	return &bodyHMACVerifier{
		scheme:   scheme,
		header:   headerName,
		prefix:   prefix,
		encoding: encoding,
		newHash:  newHash,
		size:     newHash().Size(),
		keys:     rawKeys(secrets),
	}, nil
}

func (v *bodyHMACVerifier) Scheme() string   { return v.scheme }
func (v *bodyHMACVerifier) String() string   { return redacted(v.scheme, len(v.keys)) }
func (v *bodyHMACVerifier) GoString() string { return v.String() }

func (v *bodyHMACVerifier) Verify(r Request) error {
	value, err := header(&r, v.scheme, v.header)
	if err != nil {
		return err
	}
	// Providers are not consistent about the case of a prefix ("sha256=",
	// "SHA256="); it carries no secret, so its case does not matter.
	if len(value) < len(v.prefix) || !strings.EqualFold(value[:len(v.prefix)], v.prefix) {
		return refuse(v.scheme, ReasonMalformed, "header "+v.header+" lacks its prefix")
	}
	got, ok := decodeSignature(value[len(v.prefix):], v.encoding, v.size)
	if !ok {
		return refuse(v.scheme, ReasonMalformed, fmt.Sprintf("header %s is not a %s %d-byte signature", v.header, v.encoding, v.size))
	}
	expected := make([][]byte, len(v.keys))
	for i, k := range v.keys {
		expected[i] = mac(v.newHash, k, r.Body)
	}
	if !anyEqual(expected, [][]byte{got}) {
		return refuse(v.scheme, ReasonMismatch, "signature in header "+v.header+" does not match")
	}
	return nil
}

// decodeSignature decodes an encoded MAC of the given size. The length is
// checked before decoding, so garbage of any size costs nothing to refuse.
func decodeSignature(s, encoding string, size int) ([]byte, bool) {
	switch encoding {
	case "hex":
		if len(s) != hex.EncodedLen(size) {
			return nil, false
		}
		b, err := hex.DecodeString(s)
		return b, err == nil
	default: // base64, padded as the providers send it; unpadded tolerated.
		enc := base64.StdEncoding
		if !strings.HasSuffix(s, "=") && len(s) == base64.RawStdEncoding.EncodedLen(size) {
			enc = base64.RawStdEncoding
		}
		if len(s) != enc.EncodedLen(size) {
			return nil, false
		}
		b, err := enc.DecodeString(s)
		return b, err == nil && len(b) == size
	}
}
