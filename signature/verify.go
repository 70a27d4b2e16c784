package signature

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"time"

	"github.com/hookgate/hookgate/internal/ascii"
)

// ErrInvalid is what every failed verification is: the contract's one
// answer, 401 invalid_signature. The error that Verify returns matches it
// with errors.Is, and its text is the reason, for debug logs: it never holds
// the secret, a signature or any header value.
var ErrInvalid = errors.New("signature: invalid signature")

// Tolerance is how far a Standard Webhooks timestamp may be from the
// verifier's clock, either way; one more nanosecond fails.
const Tolerance = 5 * time.Minute

// reason says why a verification failed. As an error it is ErrInvalid with
// a reason for debug logs, and it converts to an error without allocating.
type reason uint8

const (
	reasonNone reason = iota
	reasonNoKey
	reasonNoSignature
	reasonDuplicate
	reasonSHA1
	reasonMalformed
	reasonMismatch
	reasonWebhookID
	reasonTimestamp
	reasonSkew
)

var reasons = [...]string{
	reasonNone:        "signature: verified",
	reasonNoKey:       "signature: invalid signature: the credential has no signing secret",
	reasonNoSignature: "signature: invalid signature: the request carries no signature header",
	reasonDuplicate:   "signature: invalid signature: a header that presents the signature is given more than once",
	reasonSHA1:        "signature: invalid signature: sha1= signatures are refused",
	reasonMalformed:   "signature: invalid signature: no signature in the header has this scheme's prefix and encoding",
	reasonMismatch:    "signature: invalid signature: no signature matches the body and secret",
	reasonWebhookID:   "signature: invalid signature: the webhook id is missing or not 1 to 200 visible ASCII characters",
	reasonTimestamp:   "signature: invalid signature: the webhook timestamp is missing or not Unix seconds",
	reasonSkew:        "signature: invalid signature: the webhook timestamp is more than 5 minutes from the clock",
}

func (r reason) Error() string { return reasons[r] }

// Is makes every reason match ErrInvalid.
func (r reason) Is(target error) bool { return target == ErrInvalid }

// Verify checks the request's signature of row s (from Detect) with k: nil
// when it verifies, otherwise an error that matches ErrInvalid. The body is
// the raw body as received (a form body too); now is the verifier's clock,
// which a Standard Webhooks timestamp must be within Tolerance of. It
// allocates nothing.
func (k *Key) Verify(s *Scheme, h *Headers, body []byte, now time.Time) error {
	if r := k.verify(s, h, body, now); r != reasonNone {
		return r
	}
	return nil
}

func (k *Key) verify(s *Scheme, h *Headers, body []byte, now time.Time) reason {
	if k == nil {
		return reasonNoKey
	}
	if s == nil {
		return reasonNoSignature
	}
	set := s.presented(h)
	if set == nil {
		return reasonNoSignature
	}
	if h.n[set.sig] > 1 || h.n[set.id] > 1 || h.n[set.timestamp] > 1 {
		return reasonDuplicate
	}
	value := ascii.TrimBlank(h.val[set.sig])
	if s.refused != "" && hasPrefix(value, s.refused) {
		return reasonSHA1
	}
	key := &k.raw
	if s.key == whsecDecoded {
		key = &k.std
	}
	var mac [sha256.Size]byte
	switch s.signed {
	case idTimestampBody:
		id, ts := h.val[set.id], h.val[set.timestamp]
		if h.n[set.id] == 0 || !visibleASCII(id, 200) {
			return reasonWebhookID
		}
		sec, ok := parseTimestamp(ts)
		if h.n[set.timestamp] == 0 || !ok {
			return reasonTimestamp
		}
		if d := now.Sub(time.Unix(sec, 0)); d > Tolerance || d < -Tolerance {
			return reasonSkew
		}
		key.sum(&mac, id, ts, body)
	default:
		key.sum(&mac, nil, nil, body)
	}
	return s.match(value, &mac)
}

// match looks for mac among the signatures of value: one, or a list of
// which any one matching is enough. Entries without the row's prefix, or
// not well encoded, are skipped; empty ones too (a Standard Webhooks list is
// split on each space, as its reference library does).
func (s *Scheme) match(value []byte, mac *[sha256.Size]byte) reason {
	wellFormed := false
	for len(value) > 0 {
		sig := value
		value = nil
		if s.sep != 0 {
			if i := bytes.IndexByte(sig, s.sep); i >= 0 {
				sig, value = sig[:i], sig[i+1:]
			}
		}
		if s.sep == ',' {
			// "v1=a, v1=b": blanks after a comma are the list's, not the signature's.
			sig = ascii.TrimBlank(sig)
		}
		if !hasPrefix(sig, s.prefix) {
			continue
		}
		var got [sha256.Size]byte
		if !s.decode(&got, sig[len(s.prefix):]) {
			continue
		}
		wellFormed = true
		if hmac.Equal(got[:], mac[:]) {
			return reasonNone
		}
	}
	if !wellFormed {
		return reasonMalformed
	}
	return reasonMismatch
}

// strictBase64 refuses encodings whose padding bits are not zero, so that
// one MAC has one accepted spelling, as in the reference libraries, which
// compare the encoded strings.
var strictBase64 = base64.StdEncoding.Strict()

// decode decodes one signature into got; it is false unless it is exactly
// the 32 bytes of a SHA-256 MAC, well encoded.
func (s *Scheme) decode(got *[sha256.Size]byte, sig []byte) bool {
	switch s.enc {
	case hexEncoded:
		if len(sig) != hex.EncodedLen(sha256.Size) {
			return false
		}
		_, err := hex.Decode(got[:], sig)
		return err == nil
	case base64Encoded:
		if len(sig) != base64.StdEncoding.EncodedLen(sha256.Size) {
			return false
		}
		var buf [sha256.Size + 3]byte // DecodedLen(44) is 33
		n, err := strictBase64.Decode(buf[:], sig)
		if err != nil || n != sha256.Size {
			return false
		}
		copy(got[:], buf[:n])
		return true
	}
	return false
}

// parseTimestamp reads Unix seconds written in decimal the way the senders
// write them (strconv.FormatInt): no sign, no leading zero, no blank. Since
// the signed bytes hold the header as sent, this keeps them equal to what a
// sender that formats its clock signed.
func parseTimestamp(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 || (b[0] == '0' && len(b) > 1) {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func hasPrefix(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == prefix
}
