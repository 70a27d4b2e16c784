package ingest

import (
	"bytes"
	"encoding/base64"
	"net/netip"

	"github.com/valyala/fasthttp"

	"github.com/hookgate/hookgate/internal/ascii"
	"github.com/hookgate/hookgate/signature"
)

// This file reads what a request says in its headers: the token of its
// Authorization header, its media type, its Idempotency-Key, its client
// address.

var eventPing = []byte("ping")

// Lowercase ASCII words the request's headers are compared with.
const (
	bearer    = "bearer"
	basic     = "basic"
	mediaJSON = "application/json"

	headerAuthorization  = "authorization"
	headerGitlabToken    = "x-gitlab-token"
	headerIdempotencyKey = "idempotency-key"
	headerGitHubEvent    = "x-github-event"
)

// requestHeaders are the headers that present a request's credential and
// key, found in one pass; a header given twice is counted, not guessed at (a
// proxy in front may have read the other one).
type requestHeaders struct {
	auth    []byte // the last Authorization
	authN   int
	gitlab  []byte // the last X-Gitlab-Token
	gitlabN int
	idem    []byte // the last Idempotency-Key
	idemN   int
	ping    bool              // X-GitHub-Event: ping
	sig     signature.Headers // signatures, sender ids, events
}

func readHeaders(hdr *fasthttp.RequestHeader, h *requestHeaders) {
	for k, v := range hdr.All() {
		switch {
		case ascii.EqualFold(k, headerAuthorization):
			h.auth, h.authN = v, h.authN+1
		case ascii.EqualFold(k, headerGitlabToken):
			h.gitlab, h.gitlabN = v, h.gitlabN+1
		case ascii.EqualFold(k, headerIdempotencyKey):
			h.idem, h.idemN = v, h.idemN+1
		default:
			if ascii.EqualFold(k, headerGitHubEvent) {
				h.ping = bytes.Equal(ascii.TrimBlank(v), eventPing)
			}
			h.sig.Add(k, v)
		}
	}
}

// key is the request's idempotency key: its Idempotency-Key, else the
// sender's own delivery id (X-GitHub-Delivery, webhook-id, svix-id) when it
// is one. ok is false for an Idempotency-Key the contract refuses.
func (h *requestHeaders) key() (key []byte, ok bool) {
	if key, ok = idempotencyKey(*h); !ok || key != nil {
		return key, ok
	}
	return h.sig.SenderID(), true
}

// bearerOrBasic extracts the token of an Authorization header. present is
// false when there is no token at all (no header, or an empty one); token is
// nil for a header that cannot hold one (another scheme, bad Basic encoding).
// Only ASCII spaces and tabs separate the scheme from the token or may
// surround them: a Unicode space is part of the token (and so makes it
// malformed). A decoded Basic user:password lives in scratch when it fits.
func bearerOrBasic(header, scratch []byte) (token []byte, present bool) {
	header = ascii.TrimBlank(header)
	if len(header) == 0 {
		return nil, false
	}
	scheme, rest := header, []byte(nil)
	if i := bytes.IndexAny(header, " \t"); i >= 0 {
		scheme, rest = header[:i], ascii.TrimBlank(header[i:])
	}
	switch {
	case ascii.EqualFold(scheme, bearer):
		return rest, len(rest) > 0
	case ascii.EqualFold(scheme, basic):
		if len(rest) == 0 {
			return nil, false
		}
		if n := base64.StdEncoding.DecodedLen(len(rest)); n > len(scratch) {
			// A long user name: the header size limit bounds this.
			scratch = make([]byte, n)
		}
		n, err := base64.StdEncoding.Decode(scratch, rest)
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

// jsonMediaType accepts no Content-Type or application/json with parameters.
func jsonMediaType(ct []byte) bool {
	if len(ct) == 0 {
		return true
	}
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return ascii.EqualFold(ascii.TrimBlank(ct), mediaJSON)
}

// idempotencyKey returns the request's Idempotency-Key (nil when absent); ok
// is false when it is empty, too long, not visible ASCII, or given twice.
func idempotencyKey(h requestHeaders) (key []byte, ok bool) {
	key = h.idem
	switch {
	case h.idemN == 0:
		return nil, true
	case h.idemN > 1 || len(key) == 0 || len(key) > 200:
		return nil, false
	}
	for _, c := range key {
		if c < 0x21 || c > 0x7e {
			return nil, false
		}
	}
	return key, true
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
