package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/valyala/fasthttp"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/bus"
	"github.com/hookgate/hookgate/internal/logsample"
	"github.com/hookgate/hookgate/limit"
	"github.com/hookgate/hookgate/metrics"
	"github.com/hookgate/hookgate/signature"
)

// Authenticator maps token hashes to credentials. auth.Store implements it.
// Its methods must be safe to call concurrently.
type Authenticator interface {
	// Lookup returns the valid credential, auth.ErrInvalidToken or
	// auth.ErrUnavailable.
	Lookup(ctx context.Context, h auth.Hash) (*auth.Credential, error)
	// Cached returns h's credential when memory knows it valid, without
	// reading the bucket; ok false means only Lookup can tell.
	Cached(h auth.Hash) (cred *auth.Credential, ok bool)
	// LookupByID returns the valid signing credential named id, with its
	// prepared keys, auth.ErrInvalidSigningCredential or auth.ErrUnavailable.
	LookupByID(ctx context.Context, id []byte) (*auth.Credential, error)
	// CachedByID returns the signing credential named id when memory knows
	// it valid, without reading the bucket; ok false means only LookupByID
	// can tell.
	CachedByID(id []byte) (cred *auth.Credential, ok bool)
}

// Publisher stores a message and waits for its ack. bus.Publisher
// implements it. Its methods must be safe to call concurrently.
type Publisher interface {
	Publish(ctx context.Context, msg *nats.Msg) (bus.Ack, error)
	// Connected reports whether the connection to NATS is up.
	Connected() bool
}

var (
	_ Authenticator = (*auth.Store)(nil)
	_ Publisher     = (*bus.Publisher)(nil)
)

// The handler's defaults, the contract's. The command line's flag defaults
// are these same constants.
const (
	DefaultSubjectPrefix    = "hooks"
	DefaultMaxBody          = 262144
	DefaultMaxInFlight      = 10000
	DefaultAuthFailureRate  = 10.0
	DefaultAuthFailureBurst = 100
	defaultLimiterKeys      = 100_000
)

// Config is the handler's settings. As on the command line, zero means none:
// a rate of 0 is off, and a zero size or count is refused by Validate. Start
// from DefaultConfig.
type Config struct {
	SubjectPrefix    string
	MaxBody          int     // bytes
	RateLimit        float64 // per credential per second; 0: off
	RateBurst        int     // 0 with a RateLimit: one second's worth, at least 1
	AuthFailureRate  float64 // refused-token requests per client address per second; 0: off
	AuthFailureBurst int     // at least 1
	MaxInFlight      int     // requests past auth at once
	LimiterKeys      int     // max keys per limiter table; 0: 100000 (not a setting of the contract)
	TrustedProxies   Proxies // whose connections may name their client in X-Forwarded-For
	Now              func() time.Time
}

// DefaultConfig is the contract's handler settings.
func DefaultConfig() Config {
	return Config{
		SubjectPrefix:    DefaultSubjectPrefix,
		MaxBody:          DefaultMaxBody,
		AuthFailureRate:  DefaultAuthFailureRate,
		AuthFailureBurst: DefaultAuthFailureBurst,
		MaxInFlight:      DefaultMaxInFlight,
	}
}

// Validate reports settings that cannot work, named by their flags.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxBody <= 0 {
		errs = append(errs, fmt.Errorf("--max-body %d: must be a positive number of bytes", c.MaxBody))
	}
	if c.MaxInFlight <= 0 {
		errs = append(errs, fmt.Errorf("--max-in-flight %d: must be positive", c.MaxInFlight))
	}
	if c.RateLimit < 0 || c.RateBurst < 0 || c.AuthFailureRate < 0 || c.AuthFailureBurst < 0 {
		errs = append(errs, errors.New("--rate-limit, --rate-burst, --auth-failure-rate and --auth-failure-burst cannot be negative"))
	}
	return errors.Join(errs...)
}

// Handler is the webhook listener's request handler.
type Handler struct {
	cfg     Config
	auth    Authenticator
	pub     Publisher
	metrics *metrics.Metrics
	log     *slog.Logger
	logInfo *logsample.Sampler // samples refusal logs at info level
	// failLogs samples failure warnings: an outage of the broker fails every
	// request, and a line per request would bury the log. One sampler per
	// kind of failure (what failed, and why), so that a flood of one kind
	// cannot hide the first lines of another.
	failLogs map[failKind]*logsample.Sampler

	maxBody  atomic.Int64 // may shrink to fit the broker's limits
	closing  atomic.Bool  // replies carry Connection: close (CloseConnections)
	perCred  *limit.Table[credKey]
	perAddr  *limit.Table[netip.Addr]
	inFlight atomic.Int64
}

// New returns a handler for a Config that Validate accepts. m and log must
// not be nil.
func New(cfg Config, a Authenticator, p Publisher, m *metrics.Metrics, log *slog.Logger) *Handler {
	if cfg.RateLimit > 0 && cfg.RateBurst == 0 {
		// A rate given alone lets a second's worth through at once rather
		// than refusing every request after the first of a pair.
		cfg.RateBurst = max(1, int(math.Ceil(cfg.RateLimit)))
	}
	if cfg.LimiterKeys <= 0 {
		cfg.LimiterKeys = defaultLimiterKeys
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handler{
		cfg: cfg, auth: a, pub: p, metrics: m, log: log,
		logInfo:  logsample.New(1, 5),
		failLogs: newFailLogs(),
		perCred:  limit.New[credKey](cfg.RateLimit, cfg.RateBurst, cfg.LimiterKeys),
		perAddr:  limit.New[netip.Addr](cfg.AuthFailureRate, cfg.AuthFailureBurst, cfg.LimiterKeys),
	}
	h.maxBody.Store(int64(cfg.MaxBody))
	return h
}

// FitBroker lowers the body limit so that a body plus its headers fits the
// broker's max_payload and the stream's max message size (<= 0: no limit).
// It returns the limit now in force.
func (h *Handler) FitBroker(maxPayload, maxMsgSize int64) int64 {
	limit := h.maxBody.Load()
	for _, l := range []int64{maxPayload, maxMsgSize} {
		if l > 0 && limit+HeaderAllowance > l {
			limit = max(l-HeaderAllowance, 0)
		}
	}
	h.maxBody.Store(limit)
	return limit
}

// CloseConnections makes every reply from now on close its connection, so
// that senders open their next one elsewhere (the gateway is leaving).
func (h *Handler) CloseConnections() { h.closing.Store(true) }

// MaxBody is the body limit in force.
func (h *Handler) MaxBody() int64 { return h.maxBody.Load() }

// request is what the checks learn about one request, for the log line and
// the stored message.
type request struct {
	route    metrics.Route
	kind     auth.Kind
	app      []byte
	credID   string
	hookAuth string            // how a credential other than Authorization was presented (Hook-Auth)
	scheme   *signature.Scheme // the signature that authenticated it, if one did
	event    []byte            // the sender's event name (Hook-Event), if any
}

// credKey names a credential's rate budget. A platform's own ids need only be
// unique in their organization ("1", "default"), so the id alone could let
// one tenant spend another's budget.
type credKey struct {
	org  string
	kind auth.Kind
	id   string
}

var (
	pathHits    = []byte("/v1/hits/")
	pathDeploys = []byte("/v1/deploys/")
)

// route splits a path into its route and {app}; ok is false for a 404.
func route(path []byte) (r metrics.Route, kind auth.Kind, app []byte, ok bool) {
	switch {
	case bytes.HasPrefix(path, pathHits):
		r, kind, app = metrics.RouteHits, auth.KindHits, path[len(pathHits):]
	case bytes.HasPrefix(path, pathDeploys):
		r, kind, app = metrics.RouteDeploys, auth.KindDeploy, path[len(pathDeploys):]
	default:
		return metrics.RouteOther, "", nil, false
	}
	if len(app) == 0 || bytes.IndexByte(app, '/') >= 0 {
		return metrics.RouteOther, "", nil, false
	}
	return r, kind, app, true
}

// Serve handles one request.
func (h *Handler) Serve(ctx *fasthttp.RequestCtx) {
	start := h.cfg.Now()
	var req request
	code := h.serve(ctx, &req, start)
	if h.closing.Load() {
		ctx.SetConnectionClose()
	}
	h.metrics.Request(req.route, code, h.cfg.Now().Sub(start))
}

// serve runs the contract's checks in its order, then publishes; it returns
// the status written.
func (h *Handler) serve(ctx *fasthttp.RequestCtx, req *request, now time.Time) int {
	var ok bool
	req.route, req.kind, req.app, ok = route(ctx.URI().PathOriginal())
	if !ok {
		return h.refuse(ctx, req, refusalNotFound, "", 0)
	}
	if !ctx.IsPost() {
		return h.refuse(ctx, req, refusalMethod, "", 0)
	}
	if int64(len(ctx.Request.Body())) > h.maxBody.Load() {
		return h.refuse(ctx, req, refusalPayloadTooLarge, "", 0)
	}
	var hdrs requestHeaders
	readHeaders(&ctx.Request.Header, &hdrs)
	cred, status := h.authenticate(ctx, req, &hdrs, now)
	if cred == nil {
		return status
	}
	if ok, wait := h.perCred.Allow(credKey{cred.Org, cred.Kind, cred.ID}, now); !ok {
		return h.refuse(ctx, req, refusalRateLimited, metrics.AuthRateLimited, retrySeconds(wait))
	}

	if !auth.ValidName(req.app) {
		return h.refuse(ctx, req, refusalInvalidApp, "", 0)
	}
	switch cred.Allows(req.kind, req.app) {
	case auth.ScopeWrongKind:
		return h.refuse(ctx, req, refusalForbiddenKind, metrics.AuthForbidden, 0)
	case auth.ScopeWrongApp:
		return h.refuse(ctx, req, refusalForbiddenApp, metrics.AuthForbidden, 0)
	}
	body := ctx.Request.Body()
	if ct := ctx.Request.Header.ContentType(); !jsonMediaType(ct) {
		// GitHub's form content type: verified over the raw body above,
		// stored as its decoded payload.
		payload, ok := []byte(nil), req.scheme != nil && req.scheme.FormBody()
		if ok {
			payload, ok = signature.FormPayload(nil, ct, body)
		}
		if !ok {
			return h.refuse(ctx, req, refusalMediaType, "", 0)
		}
		body = payload
	}
	idemKey, ok := hdrs.key()
	if !ok {
		return h.refuse(ctx, req, refusalIdempotencyKey, "", 0)
	}
	if err := ValidateBody(req.kind, body); err != nil {
		return h.refuse(ctx, req, bodyRefusals[err], "", 0)
	}
	if hdrs.ping {
		// GitHub's ping when a webhook is set up: every check passed, so
		// the settings work; there is nothing to store.
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return fasthttp.StatusNoContent
	}
	req.event = hdrs.sig.Event()

	if n := h.inFlight.Add(1); n > int64(h.cfg.MaxInFlight) {
		h.inFlight.Add(-1)
		return h.refuse(ctx, req, refusalBusy, "", 1)
	}
	defer h.inFlight.Add(-1)
	return h.publish(ctx, req, cred, idemKey, body, now)
}

func retrySeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}
