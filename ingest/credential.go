package ingest

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/internal/ascii"
	"github.com/hookgate/hookgate/metrics"
	"github.com/hookgate/hookgate/signature"
)

// This file finds a request's credential, however the sender presents it:
// a token in Authorization (Bearer or Basic) or in X-Gitlab-Token, or a
// signature over the body with the credential named by ?credential=.

// hookAuthGitlabToken is Hook-Auth for a token sent in X-Gitlab-Token.
const hookAuthGitlabToken = "gitlab-token"

var queryCredential = []byte("credential")

// authenticate returns the request's credential, or nil and the status of
// the refusal it wrote. A request with Authorization or X-Gitlab-Token is
// never treated as signed.
//
// The client's refused-token budget is looked at only when a request is not
// served from memory: a token that memory knows valid needs neither its
// format checked nor its client's budget (nothing a guesser sends can hash
// to it), and that is almost every request.
func (h *Handler) authenticate(ctx *fasthttp.RequestCtx, req *request, hdrs *requestHeaders, now time.Time) (*auth.Credential, int) {
	switch {
	case hdrs.authN > 0:
		if hdrs.authN > 1 {
			// Which of two headers a proxy in front checked is anyone's
			// guess, so neither counts.
			return nil, h.refuseToken(ctx, req, h.budgetOf(ctx, now), refusalInvalidToken, metrics.AuthMalformed)
		}
		var scratch [512]byte // a decoded Basic user:password
		token, present := bearerOrBasic(hdrs.auth, scratch[:])
		return h.authenticateToken(ctx, req, token, present, now)
	case hdrs.gitlabN > 0:
		req.hookAuth = hookAuthGitlabToken
		if hdrs.gitlabN > 1 {
			return nil, h.refuseToken(ctx, req, h.budgetOf(ctx, now), refusalInvalidToken, metrics.AuthMalformed)
		}
		token := ascii.TrimBlank(hdrs.gitlab)
		return h.authenticateToken(ctx, req, token, len(token) > 0, now)
	}
	if id := ctx.QueryArgs().PeekBytes(queryCredential); id != nil {
		return h.authenticateSigned(ctx, req, hdrs, id, now)
	}
	return nil, h.refuseToken(ctx, req, h.budgetOf(ctx, now), refusalMissingToken, metrics.AuthMissing)
}

// authenticateToken checks a token: present is false when there is none at
// all, token nil when the header cannot hold one.
func (h *Handler) authenticateToken(ctx *fasthttp.RequestCtx, req *request, token []byte, present bool, now time.Time) (*auth.Credential, int) {
	var hash auth.Hash
	if len(token) > 0 && len(token) <= auth.MaxTokenLen {
		hash = auth.HashToken(token)
		if cred, ok := h.auth.Cached(hash); ok {
			req.credID = cred.ID
			return cred, 0
		}
	}
	b := h.budgetOf(ctx, now)
	switch {
	case !present:
		return nil, h.refuseToken(ctx, req, b, refusalMissingToken, metrics.AuthMissing)
	case token == nil || auth.CheckToken(token) != nil:
		return nil, h.refuseToken(ctx, req, b, refusalInvalidToken, metrics.AuthMalformed)
	}
	if b.over {
		// Over its budget, a client guessing tokens costs the bucket
		// nothing: no lookup. (A token known valid was served above.)
		return nil, h.refuse(ctx, req, refusalRateLimited, metrics.AuthRateLimited, retrySeconds(b.wait))
	}
	cred, err := h.auth.Lookup(context.Background(), hash)
	switch {
	case errors.Is(err, auth.ErrInvalidToken):
		return nil, h.refuseToken(ctx, req, b, refusalInvalidToken, metrics.AuthInvalid)
	case err != nil:
		return nil, h.unavailable(ctx, req, err)
	}
	req.credID = cred.ID
	return cred, 0
}

// authenticateSigned checks a signed request: its credential by id, then the
// signature over the raw body with any of the credential's keys (the current
// one and those in a rotation's grace period). Every failure is one answer,
// invalid_signature. A credential memory holds is checked without looking at
// the client's refused-token budget, as a token memory knows is; over its
// budget, a client is served only that way, and otherwise gets 429.
func (h *Handler) authenticateSigned(ctx *fasthttp.RequestCtx, req *request, hdrs *requestHeaders, id []byte, now time.Time) (*auth.Credential, int) {
	scheme := signature.Detect(&hdrs.sig)
	if scheme == nil {
		return nil, h.refuseToken(ctx, req, h.budgetOf(ctx, now), refusalSignature, metrics.AuthSignature)
	}
	req.scheme, req.hookAuth = scheme, scheme.HookAuth()
	cred, cached := h.auth.CachedByID(id)
	if !cached {
		b := h.budgetOf(ctx, now)
		if b.over {
			return nil, h.refuse(ctx, req, refusalRateLimited, metrics.AuthRateLimited, retrySeconds(b.wait))
		}
		var err error
		cred, err = h.auth.LookupByID(context.Background(), id)
		switch {
		case errors.Is(err, auth.ErrInvalidSigningCredential):
			return nil, h.refuseToken(ctx, req, b, refusalSignature, metrics.AuthSignature)
		case err != nil:
			return nil, h.unavailable(ctx, req, err)
		}
	}
	body := ctx.Request.Body()
	for _, k := range cred.Keys {
		if k.Verify(scheme, &hdrs.sig, body, now) == nil {
			req.credID = cred.ID
			return cred, 0
		}
	}
	return nil, h.refuseToken(ctx, req, h.budgetOf(ctx, now), refusalSignature, metrics.AuthSignature)
}

// unavailable answers a request whose credential NATS could not vouch for:
// the bucket could not be read for a credential that memory does not hold
// (while NATS is down the cache is distrusted). The webhook is refused for
// the broker's sake, so it counts as a failure to publish.
func (h *Handler) unavailable(ctx *fasthttp.RequestCtx, req *request, err error) int {
	why := h.failureReason(err)
	h.metrics.PublishFailure(why)
	h.logFailure(failedLookup, why, req, err)
	return h.refuse(ctx, req, refusalUnavailable, "", 1)
}

// budget is a client address's refused-token budget as it stood when the
// request arrived.
type budget struct {
	addr netip.Addr
	now  time.Time
	over bool          // spent: any credential not known valid gets 429
	wait time.Duration // until the next refusal may be spent
}

// budgetOf is the refused-token budget of the request's client address.
func (h *Handler) budgetOf(ctx *fasthttp.RequestCtx, now time.Time) budget {
	addr := clientKey(h.clientAddr(ctx))
	over, wait := h.perAddr.Over(addr, now)
	return budget{addr: addr, now: now, over: over, wait: wait}
}

// refuseToken refuses a request's credential: 429 when its client is over
// its refused-token budget, else r (every 401 spends the budget).
func (h *Handler) refuseToken(ctx *fasthttp.RequestCtx, req *request, b budget, r *refusal, reason string) int {
	if b.over {
		return h.refuse(ctx, req, refusalRateLimited, metrics.AuthRateLimited, retrySeconds(b.wait))
	}
	h.perAddr.Spend(b.addr, b.now)
	return h.refuse(ctx, req, r, reason, 0)
}
