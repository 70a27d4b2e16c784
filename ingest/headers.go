package ingest

import (
	"bytes"
	"encoding/base64"
	"net/netip"

	"github.com/valyala/fasthttp"
)

// This file reads what a request says in its headers: the token of its
// Authorization header, its media type, its Idempotency-Key, its client
// address.

var (
	bearer    = []byte("bearer ")
	basic     = []byte("basic ")
	mediaJSON = []byte("application/json")

	headerIdempotencyKey = []byte("idempotency-key")
)

// bearerOrBasic extracts the token of an Authorization header. present is
// false when there is no token at all (no header, or an empty one); token is
// nil for a header that cannot hold one (another scheme, bad Basic encoding).
// A decoded Basic user:password lives in scratch when it fits.
func bearerOrBasic(header, scratch []byte) (token []byte, present bool) {
	header = bytes.TrimSpace(header)
	if len(header) == 0 {
		return nil, false
	}
	switch {
	case hasPrefixFold(header, bearer) || equalFold(header, bearer[:len(bearer)-1]):
		tok := bytes.TrimSpace(header[min(len(bearer), len(header)):])
		return tok, len(tok) > 0
	case hasPrefixFold(header, basic) || equalFold(header, basic[:len(basic)-1]):
		enc := bytes.TrimSpace(header[min(len(basic), len(header)):])
		if len(enc) == 0 {
			return nil, false
		}
		if n := base64.StdEncoding.DecodedLen(len(enc)); n > len(scratch) {
			// A long user name: the header size limit bounds this.
			scratch = make([]byte, n)
		}
		n, err := base64.StdEncoding.Decode(scratch, enc)
		if err != nil {
			return nil, true
		}
		userPass := scratch[:n]
		i := bytes.IndexByte(userPass, ':')
		if i < 0 {
			return nil, true
		}
		tok := userPass[i+1:]
		return tok, len(tok) > 0
	}
	return nil, true
}

func hasPrefixFold(s, prefix []byte) bool {
	return len(s) >= len(prefix) && equalFold(s[:len(prefix)], prefix)
}

// equalFold compares s with a lowercase ASCII word, ignoring ASCII case only:
// bytes.EqualFold would also match Unicode folds such as the Kelvin sign.
func equalFold(s, lower []byte) bool {
	if len(s) != len(lower) {
		return false
	}
	for i, c := range s {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// jsonMediaType accepts no Content-Type or application/json with parameters.
func jsonMediaType(ct []byte) bool {
	if len(ct) == 0 {
		return true
	}
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return equalFold(bytes.TrimSpace(ct), mediaJSON)
}

// idempotencyKey returns the request's Idempotency-Key (nil when absent); ok
// is false when it is empty, too long, not visible ASCII, or given twice.
func idempotencyKey(hdr *fasthttp.RequestHeader) (key []byte, ok bool) {
	n := 0
	for k, v := range hdr.All() {
		if equalFold(k, headerIdempotencyKey) {
			n++
			key = v
		}
	}
	switch {
	case n == 0:
		return nil, true
	case n > 1 || len(key) == 0 || len(key) > 200:
		return nil, false
	}
	for _, c := range key {
		if c < 0x21 || c > 0x7e {
			return nil, false
		}
	}
	return key, true
}

// remoteAddr is the client address that refused-token budgets are kept by.
func remoteAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	addr, _ := netip.AddrFromSlice(ctx.RemoteIP())
	return clientKey(addr)
}

// clientKey is what per-client budgets and connection caps count against:
// the IPv4 address, or the IPv6 /64 (one host usually holds a whole /64).
func clientKey(addr netip.Addr) netip.Addr {
	addr = addr.Unmap()
	if addr.Is6() {
		if p, err := addr.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return addr
}
