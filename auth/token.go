package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"sync"
)

// Token prefixes of hookgate's own tokens. A token with one of these prefixes
// carries a checksum, so a mistyped one is refused before any lookup.
const (
	PrefixHits   = "hgh_"
	PrefixDeploy = "hgd_"
)

const (
	base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	// randomChars base62 characters carry 44*log2(62) = 262 bits.
	randomChars   = 44
	checksumChars = 6 // 62^6 > 2^32 holds a CRC-32
	// TokenLen is the length of an issued token.
	TokenLen = len(PrefixHits) + randomChars + checksumChars

	// MinTokenLen and MaxTokenLen bound tokens of any format, including those
	// a platform issues itself.
	MinTokenLen = 16
	MaxTokenLen = 256
)

// ErrMalformedToken is returned for a token that no credential can match:
// outside 16-256 visible ASCII, or an hg prefix with a bad checksum.
var ErrMalformedToken = errors.New("auth: malformed token")

// NewToken returns a fresh random token for a credential of the given kind.
func NewToken(kind Kind) (string, error) {
	var prefix string
	switch kind {
	case KindHits:
		prefix = PrefixHits
	case KindDeploy:
		prefix = PrefixDeploy
	default:
		return "", fmt.Errorf("auth: new token: unknown kind %q", kind)
	}
	buf := make([]byte, 0, TokenLen)
	buf = append(buf, prefix...)
	// Rejection sampling keeps every character uniform: bytes >= 248 (4*62)
	// would favour the first characters of the alphabet.
	var rnd [64]byte
	for len(buf) < len(prefix)+randomChars {
		if _, err := rand.Read(rnd[:]); err != nil {
			return "", fmt.Errorf("auth: new token: %w", err)
		}
		for _, b := range rnd {
			if b >= 248 {
				continue
			}
			buf = append(buf, base62[b%62])
			if len(buf) == len(prefix)+randomChars {
				break
			}
		}
	}
	buf = appendChecksum(buf, checksum(buf))
	return string(buf), nil
}

// checksum is CRC-32 (IEEE), the same value as crc32.ChecksumIEEE. It is
// spelled out because crc32's dispatch to an assembly routine makes its
// argument escape, and with it the caller's stack buffer holding a Basic
// auth password: a heap allocation per request for 50 bytes of CRC.
func checksum(p []byte) uint32 {
	crc := ^uint32(0)
	for _, v := range p {
		crc = crc32.IEEETable[byte(crc)^v] ^ (crc >> 8)
	}
	return ^crc
}

func appendChecksum(dst []byte, sum uint32) []byte {
	var enc [checksumChars]byte
	for i := checksumChars - 1; i >= 0; i-- {
		enc[i] = base62[sum%62]
		sum /= 62
	}
	return append(dst, enc[:]...)
}

// CheckToken reports whether tok can be a token at all: 16 to 256 visible
// ASCII characters, and for hookgate's own prefixes the exact length and a
// valid checksum. It does not allocate.
func CheckToken(tok []byte) error {
	if len(tok) < MinTokenLen || len(tok) > MaxTokenLen {
		return ErrMalformedToken
	}
	for _, c := range tok {
		if c < 0x21 || c > 0x7e {
			return ErrMalformedToken
		}
	}
	if !hasOwnPrefix(tok) {
		return nil
	}
	if len(tok) != TokenLen {
		return ErrMalformedToken
	}
	body := tok[:TokenLen-checksumChars]
	for _, c := range body[len(PrefixHits):] {
		if !isBase62(c) {
			return ErrMalformedToken
		}
	}
	var want [checksumChars]byte
	appendChecksum(want[:0], checksum(body))
	if string(want[:]) != string(tok[TokenLen-checksumChars:]) {
		return ErrMalformedToken
	}
	return nil
}

func hasOwnPrefix(tok []byte) bool {
	return len(tok) >= 4 && tok[0] == 'h' && tok[1] == 'g' && (tok[2] == 'h' || tok[2] == 'd') && tok[3] == '_'
}

func isBase62(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
}

// Hash is the SHA-256 of a token: the only form in which a token is stored,
// cached or compared.
type Hash [sha256.Size]byte

// HashToken returns the SHA-256 of tok.
func HashToken(tok []byte) Hash { return Sum256(tok) }

// Sum256 is sha256.Sum256 without a heap allocation on every call.
// sha256.Sum256 builds a digest and allocates it when the compiler cannot
// devirtualize both calls on it: with the release build's PGO profile it
// devirtualizes only Write, so every request paid 128 bytes of garbage
// (seen in an allocation profile of the embedded gateway). A pooled digest
// costs the same in every build.
//
// b is copied into the pooled digest's own buffer before it is hashed: b
// handed to the digest's Write (an interface method) would escape, and every
// caller's stack buffer (the request's token scratch, the Idempotency-Key
// input) would move to the heap.
func Sum256(b []byte) [sha256.Size]byte {
	h := digests.Get().(*digest)
	h.d.Reset()
	for len(b) > 0 {
		n := copy(h.buf[:], b)
		h.d.Write(h.buf[:n])
		b = b[n:]
	}
	h.d.Sum(h.sum[:0])
	sum := h.sum
	digests.Put(h)
	return sum
}

type digest struct {
	d   hash.Hash
	buf [512]byte         // the input, one chunk at a time
	sum [sha256.Size]byte // Sum appends here, not to the caller's stack
}

var digests = sync.Pool{New: func() any { return &digest{d: sha256.New()} }}

// String returns the lowercase hex form used in bucket keys.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// ParseHash parses the lowercase hex form of a token hash.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*len(h) {
		return h, fmt.Errorf("auth: token hash %q: want %d hex characters", s, 2*len(h))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return h, fmt.Errorf("auth: token hash %q: not lowercase hex", s)
		}
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("auth: token hash: %w", err)
	}
	return h, nil
}
