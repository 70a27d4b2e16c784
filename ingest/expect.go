package ingest

import (
	"github.com/valyala/fasthttp"

	"github.com/hookgate/hookgate/internal/ascii"
	"github.com/hookgate/hookgate/metrics"
)

// expect answers a request that sends "Expect: 100-continue" before its
// body: 100 Continue only when its path, method, the presence of a token and
// its announced size pass, so that a sender is not invited to send a body
// that would be refused. Otherwise fasthttp answers with the refusal and
// closes the connection, since the sender may have started sending the body
// anyway.
func (h *Handler) expect(ctx *fasthttp.RequestCtx) int {
	var req request
	r, authReason := h.expectRefusal(ctx, &req)
	if r == nil {
		return fasthttp.StatusContinue
	}
	// fasthttp's documentation says an ExpectHandler must not modify the
	// response; its code (v1.78.0) writes whatever the response holds, so
	// the refusal carries the contract's JSON body. TestExpectContinue pins
	// this: after an upgrade that drops the body, the test says so.
	r.write(ctx, 0)
	h.metrics.Request(req.route, r.status, 0)
	if authReason != "" {
		h.metrics.AuthFailure(authReason)
	}
	h.log.Debug("request refused before its body", "status", r.status, "error", r.code, "route", req.route.String(),
		"app", safeApp(req.app), "remote", h.clientAddr(ctx).String())
	return r.status
}

// expectRefusal runs the checks that need no body, in the contract's order;
// it returns nil when they pass.
func (h *Handler) expectRefusal(ctx *fasthttp.RequestCtx, req *request) (*refusal, string) {
	var ok bool
	req.route, req.kind, req.app, ok = route(ctx.URI().PathOriginal())
	switch {
	case !ok:
		return refusalNotFound, ""
	case !ctx.IsPost():
		return refusalMethod, ""
	case int64(ctx.Request.Header.ContentLength()) > h.maxBody.Load():
		return refusalPayloadTooLarge, ""
	}
	var hdrs requestHeaders
	readHeaders(&ctx.Request.Header, &hdrs)
	var scratch [512]byte
	if _, present := bearerOrBasic(hdrs.auth, scratch[:]); present || len(ascii.TrimBlank(hdrs.gitlab)) > 0 ||
		ctx.QueryArgs().PeekBytes(queryCredential) != nil {
		return nil, ""
	}
	// A missing token is a 401 like any other: it spends the client's
	// refused-token budget, and past it the answer is 429.
	now := h.cfg.Now()
	b := h.budgetOf(ctx, now)
	if b.over {
		return refusalRateLimited, metrics.AuthRateLimited
	}
	h.perAddr.Spend(b.addr, now)
	return refusalMissingToken, metrics.AuthMissing
}
