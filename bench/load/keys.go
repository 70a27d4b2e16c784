package main

import (
	"fmt"
	"sync/atomic"
)

// Keyed rows send a fresh Idempotency-Key with every request, so that the
// gateway stores a Nats-Msg-Id and a Hook-Idempotency-Key with each webhook
// and the broker indexes every one in the stream's duplicate window.
//
// A key is a random prefix of the process that sends it and a fixed-width
// decimal counter, "<16 hex>-<16 digits>": unique across every process of one
// invocation (goGen in the benchmark, each rate-gen child, each wrk run), and
// always keyLen bytes, so that rate-gen writes it in place into its prebuilt
// request.
const (
	keyPrefixLen = 16
	keyDigits    = 16
	keyLen       = keyPrefixLen + 1 + keyDigits
	keyHeader    = "Idempotency-Key"
)

// keyPrefix is this process's prefix; keySeq numbers its keys.
var (
	keyPrefix = randomHex(keyPrefixLen / 2)
	keySeq    atomic.Uint64
)

// newKey returns a key of keyLen bytes with prefix and a zero counter, to be
// stamped with stampKey.
func newKey(prefix string) []byte {
	if len(prefix) != keyPrefixLen {
		panic(fmt.Sprintf("key prefix %q: want %d bytes", prefix, keyPrefixLen))
	}
	b := make([]byte, 0, keyLen)
	b = append(b, prefix...)
	b = append(b, '-')
	for range keyDigits {
		b = append(b, '0')
	}
	return b
}

// stampKey writes n as keyDigits decimal digits into digits (the last
// keyDigits bytes of a key), without allocating. Counters never reach 10^16.
func stampKey(digits []byte, n uint64) {
	_ = digits[keyDigits-1]
	for i := keyDigits - 1; i >= 0; i-- {
		digits[i] = byte('0' + n%10)
		n /= 10
	}
}
