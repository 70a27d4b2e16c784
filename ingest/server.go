package ingest

import (
	"errors"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// ServerConfig holds the limits of the webhook listener. Zero values take
// defaults that protect a public listener.
type ServerConfig struct {
	ReadTimeout   time.Duration // whole request; default 10s
	WriteTimeout  time.Duration // whole reply; default 10s
	IdleTimeout   time.Duration // keep-alive; default 120s
	MaxHeaderSize int           // bytes; default 16 KiB
	MaxConnsPerIP int           // default DefaultMaxConnsPerIP; enforced by LimitConns
	MaxConns      int           // default DefaultMaxConns; enforced by LimitConns
}

// Connection caps of a public listener, per client address and in all.
const (
	DefaultMaxConnsPerIP = 1024
	DefaultMaxConns      = 65536
)

// NewServer returns the fasthttp server for h with the configured limits.
// fasthttp refuses an over-limit body or malformed request itself; its
// ErrorHandler here turns those into the contract's JSON replies.
func NewServer(cfg ServerConfig, h *Handler) *fasthttp.Server {
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 10 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 120 * time.Second
	}
	if cfg.MaxHeaderSize <= 0 {
		cfg.MaxHeaderSize = 16 << 10
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	return &fasthttp.Server{
		Handler:      h.Serve,
		ErrorHandler: h.serveError,
		Name:         "hookgate",
		// The listener caps connections per address and in all with the
		// contract's JSON replies (LimitConns). Concurrency is only a
		// backstop, with headroom: fasthttp frees a connection's slot in the
		// listener before its worker is free again, and a new connection
		// arriving in between must not meet fasthttp's plain-text 503.
		Concurrency:                   2 * cfg.MaxConns,
		ReadBufferSize:                cfg.MaxHeaderSize,
		WriteBufferSize:               4096,
		ReadTimeout:                   cfg.ReadTimeout,
		WriteTimeout:                  cfg.WriteTimeout,
		IdleTimeout:                   cfg.IdleTimeout,
		MaxRequestBodySize:            h.cfg.MaxBody,
		DisablePreParseMultipartForm:  true,
		DisableHeaderNamesNormalizing: false,
		NoDefaultContentType:          true,
		CloseOnShutdown:               true,
		TCPKeepalive:                  true,
		Logger:                        debugLogger{h.log},
	}
}

// debugLogger sends fasthttp's own messages (a client that went away, a
// malformed request) to the log at debug level: they are the client's
// problem, not the operator's. Only the message's shape is logged: fasthttp
// quotes snippets of the raw request in its errors, and those may hold an
// Authorization header.
type debugLogger struct{ log *slog.Logger }

func (l debugLogger) Printf(format string, _ ...any) {
	l.log.Debug("http: connection error", "kind", format)
}

// serveError answers what fasthttp could not hand to Serve.
func (h *Handler) serveError(ctx *fasthttp.RequestCtx, err error) {
	r := errBadRequest
	var netErr net.Error
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		r = errPayloadTooLarge
	case errors.As(err, &netErr) && netErr.Timeout():
		r = errRequestTimeout
	case errors.As(err, &small) || strings.Contains(err.Error(), "too big"):
		r = errHeadersTooLarge
	}
	rt, _, _, _ := route(ctx.URI().PathOriginal())
	r.write(ctx, 0)
	h.metrics.Request(rt, r.status, 0)
	if r != errPayloadTooLarge {
		// err is not logged: fasthttp quotes the raw request in it.
		h.log.Debug("malformed request", "status", r.status, "error", r.code, "remote", ctx.RemoteIP().String())
	}
}
