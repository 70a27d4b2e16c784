package ingest

import (
	"context"
	"errors"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/valyala/fasthttp"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/bus"
	"github.com/hookgate/hookgate/internal/logsample"
	"github.com/hookgate/hookgate/metrics"
)

// This file writes refusals and failures to the log, sampled: a flood of
// either (a client in a loop, a broker outage) must not bury the log.

// What failed, in failure warnings.
const (
	failedLookup  = "token lookup failed"
	failedPublish = "publish failed"
)

// failKind is one kind of failure warning (what failed, and why), sampled
// apart from the others.
type failKind struct{ what, why string }

// newFailLogs makes a sampler for every kind of failure warning, so that
// logFailure never meets a missing one.
func newFailLogs() map[failKind]*logsample.Sampler {
	m := make(map[failKind]*logsample.Sampler)
	for _, what := range []string{failedLookup, failedPublish} {
		for _, why := range []string{metrics.PublishDisconnected, metrics.PublishTimeout, metrics.PublishError} {
			m[failKind{what, why}] = logsample.New(1, 10)
		}
	}
	return m
}

// failureReason is the publish_failures_total reason for a webhook that NATS
// did not take, whether its publish or its token read failed.
func (h *Handler) failureReason(err error) string {
	switch {
	case errors.Is(err, bus.ErrDisconnected) || !h.pub.Connected():
		return metrics.PublishDisconnected
	case errors.Is(err, bus.ErrPublishTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return metrics.PublishTimeout
	}
	return metrics.PublishError
}

// refuse writes the refusal, counts it and logs it (sampled at info).
func (h *Handler) refuse(ctx *fasthttp.RequestCtx, req *request, r *refusal, authReason string, retryAfter int) int {
	r.write(ctx, retryAfter)
	if authReason != "" {
		h.metrics.AuthFailure(authReason)
	}
	level, leftOut := slog.LevelDebug, int64(0) // every refusal is logged at debug
	if !h.log.Enabled(context.Background(), slog.LevelDebug) {
		var ok bool
		if ok, leftOut = h.logInfo.Allow(); !ok {
			return r.status
		}
		level = slog.LevelInfo
	}
	attrs := []any{"status", r.status, "error", r.code, "route", req.route.String(),
		"app", safeApp(req.app), "credential", req.credID, "remote", h.clientAddr(ctx).String()}
	if leftOut > 0 {
		attrs = append(attrs, "refusals_not_logged_since_last", leftOut)
	}
	h.log.Log(context.Background(), level, "request refused", attrs...)
	return r.status
}

// logFailure logs a request's failure at warn: every one at debug, else
// sampled per kind of failure.
func (h *Handler) logFailure(what, why string, req *request, err error) {
	var leftOut int64
	if !h.log.Enabled(context.Background(), slog.LevelDebug) {
		var ok bool
		if ok, leftOut = h.failLogs[failKind{what, why}].Allow(); !ok {
			return
		}
	}
	attrs := []any{"route", req.route.String(), "app", safeApp(req.app), "credential", req.credID, "reason", why, "err", auth.RedactKeys(err.Error())}
	if leftOut > 0 {
		attrs = append(attrs, "warnings_not_logged_since_last", leftOut)
	}
	h.log.Warn(what, attrs...)
}

// safeApp returns {app} for a log line only when it is a valid name: anything
// else came from the sender and may be anything.
func safeApp(app []byte) string {
	if auth.ValidName(app) {
		return string(app)
	}
	return "(invalid)"
}
