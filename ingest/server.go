package ingest

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// The webhook listener's defaults, the contract's: limits that protect a
// public listener. The command line's flag defaults are these constants.
const (
	DefaultReadTimeout   = 10 * time.Second
	DefaultWriteTimeout  = 10 * time.Second
	DefaultIdleTimeout   = 120 * time.Second
	DefaultMaxHeaderSize = 16 << 10
	DefaultMaxConnsPerIP = 1024
	DefaultMaxConns      = 65536
)

// ServerConfig holds the limits of the webhook listener. As on the command
// line, zero means none, and Validate refuses it: a public listener needs
// every one of them. Start from DefaultServerConfig.
type ServerConfig struct {
	ReadTimeout   time.Duration // whole request
	WriteTimeout  time.Duration // whole reply
	IdleTimeout   time.Duration // keep-alive
	MaxHeaderSize int           // bytes
	MaxConnsPerIP int           // enforced by LimitConns
	MaxConns      int           // enforced by LimitConns
}

// DefaultServerConfig is the contract's listener limits.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{
		ReadTimeout:   DefaultReadTimeout,
		WriteTimeout:  DefaultWriteTimeout,
		IdleTimeout:   DefaultIdleTimeout,
		MaxHeaderSize: DefaultMaxHeaderSize,
		MaxConnsPerIP: DefaultMaxConnsPerIP,
		MaxConns:      DefaultMaxConns,
	}
}

// Validate reports limits that are missing or cannot work, named by their
// flags.
func (c *ServerConfig) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--read-timeout", c.ReadTimeout}, {"--write-timeout", c.WriteTimeout}, {"--idle-timeout", c.IdleTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s %v: must be positive", d.name, d.v))
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"--max-header-size", c.MaxHeaderSize}, {"--max-conns-per-ip", c.MaxConnsPerIP}, {"--max-conns", c.MaxConns}} {
		if n.v <= 0 {
			errs = append(errs, fmt.Errorf("%s %d: must be positive", n.name, n.v))
		}
	}
	return errors.Join(errs...)
}

// NewServer returns the fasthttp server for h with the limits of a cfg that
// Validate accepts. fasthttp refuses an over-limit body or malformed request
// itself; its ErrorHandler here turns those into the contract's JSON replies.
func NewServer(cfg ServerConfig, h *Handler) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:       h.Serve,
		ErrorHandler:  h.serveError,
		ExpectHandler: h.expect,
		Name:          "hookgate",
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
	r := refusalBadRequest
	var netErr net.Error
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		r = refusalPayloadTooLarge
	case errors.As(err, &netErr) && netErr.Timeout():
		r = refusalRequestTimeout
	case errors.As(err, &small) || strings.Contains(err.Error(), "too big"):
		r = refusalHeadersTooLarge
	}
	rt, _, _, _ := route(ctx.URI().PathOriginal())
	r.write(ctx, 0)
	h.metrics.Request(rt, r.status, 0)
	if r != refusalPayloadTooLarge {
		// err is not logged: fasthttp quotes the raw request in it.
		h.log.Debug("malformed request", "status", r.status, "error", r.code, "remote", h.clientAddr(ctx).String())
	}
}
