package ingest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"math"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/valyala/fasthttp"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/bus"
	"github.com/hookgate/hookgate/internal/logsample"
	"github.com/hookgate/hookgate/limit"
	"github.com/hookgate/hookgate/metrics"
)

// Authenticator maps token hashes to credentials. auth.Store implements it.
// Its methods must be safe to call concurrently.
type Authenticator interface {
	// Lookup returns the valid credential, auth.ErrInvalidToken or
	// auth.ErrUnavailable.
	Lookup(ctx context.Context, h auth.Hash) (*auth.Credential, error)
	// Known reports whether h is known valid without reading the bucket.
	Known(h auth.Hash) bool
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

// Config is the handler's settings. Zero values take the contract's defaults.
type Config struct {
	SubjectPrefix    string  // default "hooks"
	MaxBody          int     // default 262144
	RateLimit        float64 // per credential per second; 0: off
	RateBurst        int     // default with a RateLimit: one second's worth, at least 1
	AuthFailureRate  float64 // default 10; negative: off
	AuthFailureBurst int     // default 100
	MaxInFlight      int     // requests past auth at once; default 10000
	LimiterKeys      int     // max keys per limiter table; default 100000
	Now              func() time.Time
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
	perCred  *limit.Table[credKey]
	perAddr  *limit.Table[netip.Addr]
	inFlight atomic.Int64

	idPrefix string
	idSeq    atomic.Uint64
}

// New returns a handler. m and log must not be nil.
func New(cfg Config, a Authenticator, p Publisher, m *metrics.Metrics, log *slog.Logger) *Handler {
	if cfg.SubjectPrefix == "" {
		cfg.SubjectPrefix = "hooks"
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 262144
	}
	if cfg.RateLimit > 0 && cfg.RateBurst == 0 {
		// The contract's defaults are a rate and a burst of 0; a rate given
		// alone lets a second's worth through at once rather than refusing
		// every request after the first of a pair.
		cfg.RateBurst = max(1, int(math.Ceil(cfg.RateLimit)))
	}
	if cfg.AuthFailureRate == 0 {
		cfg.AuthFailureRate, cfg.AuthFailureBurst = 10, 100
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 10000
	}
	if cfg.LimiterKeys <= 0 {
		cfg.LimiterKeys = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	h := &Handler{
		cfg: cfg, auth: a, pub: p, metrics: m, log: log,
		logInfo:  logsample.New(1, 5),
		failLogs: make(map[failKind]*logsample.Sampler),
		perCred:  limit.New[credKey](cfg.RateLimit, cfg.RateBurst, cfg.LimiterKeys),
		perAddr:  limit.New[netip.Addr](cfg.AuthFailureRate, cfg.AuthFailureBurst, cfg.LimiterKeys),
		idPrefix: hex.EncodeToString(rnd[:]) + "-",
	}
	h.maxBody.Store(int64(cfg.MaxBody))
	for _, what := range []string{failedLookup, failedPublish} {
		for _, why := range []string{metrics.PublishDisconnected, metrics.PublishTimeout, metrics.PublishError} {
			h.failLogs[failKind{what, why}] = logsample.New(1, 10)
		}
	}
	return h
}

// What failed, in failure warnings.
const (
	failedLookup  = "token lookup failed"
	failedPublish = "publish failed"
)

type failKind struct{ what, why string }

// HeaderAllowance is what the gateway's own NATS headers can add to a body:
// the broker's limits must hold both.
const HeaderAllowance = 1024

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

// MaxBody is the body limit in force.
func (h *Handler) MaxBody() int64 { return h.maxBody.Load() }

var (
	pathHits    = []byte("/v1/hits/")
	pathDeploys = []byte("/v1/deploys/")
	bearer      = []byte("bearer ")
	basic       = []byte("basic ")
)

// request is what the checks learn about one request, for the log line.
type request struct {
	route  metrics.Route
	kind   auth.Kind
	app    []byte
	credID string
}

// Serve handles one request.
func (h *Handler) Serve(ctx *fasthttp.RequestCtx) {
	start := h.cfg.Now()
	var req request
	code := h.serve(ctx, &req, start)
	h.metrics.Request(req.route, code, h.cfg.Now().Sub(start))
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

// credKey names a credential's rate budget. A platform's own ids need only be
// unique in their organization ("1", "default"), so the id alone could let
// one tenant spend another's budget.
type credKey struct {
	org  string
	kind auth.Kind
	id   string
}

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

func (h *Handler) serve(ctx *fasthttp.RequestCtx, req *request, now time.Time) int {
	var ok bool
	req.route, req.kind, req.app, ok = route(ctx.URI().PathOriginal())
	if !ok {
		return h.refuse(ctx, req, errNotFound, "", 0)
	}
	if !ctx.IsPost() {
		return h.refuse(ctx, req, errMethod, "", 0)
	}
	if int64(len(ctx.Request.Body())) > h.maxBody.Load() {
		return h.refuse(ctx, req, errPayloadTooLarge, "", 0)
	}

	// Token. A decoded Basic user:password lives in scratch.
	var scratch [512]byte
	token, present := bearerOrBasic(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization), scratch[:])
	addr := remoteAddr(ctx)
	// A client over its refused-token budget gets 429 for any token not
	// already known to be valid, a missing or malformed one included, and no
	// lookup: guessing costs the bucket nothing.
	over, wait := h.perAddr.Over(addr, now)
	if !present {
		if over {
			return h.refuse(ctx, req, errRateLimited, metrics.AuthRateLimited, retrySeconds(wait))
		}
		h.perAddr.Spend(addr, now) // every 401 counts against the address
		return h.refuse(ctx, req, errMissingToken, metrics.AuthMissing, 0)
	}
	if token == nil || auth.CheckToken(token) != nil {
		if over {
			return h.refuse(ctx, req, errRateLimited, metrics.AuthRateLimited, retrySeconds(wait))
		}
		h.perAddr.Spend(addr, now)
		return h.refuse(ctx, req, errInvalidToken, metrics.AuthMalformed, 0)
	}
	hash := auth.HashToken(token)
	if over && !h.auth.Known(hash) {
		return h.refuse(ctx, req, errRateLimited, metrics.AuthRateLimited, retrySeconds(wait))
	}
	cred, err := h.auth.Lookup(context.Background(), hash)
	switch {
	case errors.Is(err, auth.ErrInvalidToken):
		h.perAddr.Spend(addr, now)
		return h.refuse(ctx, req, errInvalidToken, metrics.AuthInvalid, 0)
	case err != nil:
		// NATS could not answer for a token that memory does not vouch for
		// (while NATS is down the cache is distrusted): the webhook is refused
		// for the broker's sake, so it counts as a failure to publish.
		why := h.failureReason(err)
		h.metrics.PublishFailure(why)
		h.logError(failedLookup, why, req, err)
		return h.refuse(ctx, req, errUnavailable, "", 1)
	}
	req.credID = cred.ID
	if ok, wait := h.perCred.Allow(credKey{cred.Org, cred.Kind, cred.ID}, now); !ok {
		return h.refuse(ctx, req, errRateLimited, metrics.AuthRateLimited, retrySeconds(wait))
	}

	if !auth.ValidName(req.app) {
		return h.refuse(ctx, req, errInvalidApp, "", 0)
	}
	switch cred.Allows(req.kind, req.app) {
	case auth.ScopeWrongKind:
		return h.refuse(ctx, req, errForbiddenKind, metrics.AuthForbidden, 0)
	case auth.ScopeWrongApp:
		return h.refuse(ctx, req, errForbiddenApp, metrics.AuthForbidden, 0)
	}
	if !jsonMediaType(ctx.Request.Header.ContentType()) {
		return h.refuse(ctx, req, errMediaType, "", 0)
	}
	idemKey, ok := idempotencyKey(&ctx.Request.Header)
	if !ok {
		return h.refuse(ctx, req, errIdempotencyKey, "", 0)
	}
	body := ctx.Request.Body()
	if err := ValidateBody(req.kind, body); err != nil {
		return h.refuse(ctx, req, bodyErrors[err], "", 0)
	}

	if n := h.inFlight.Add(1); n > int64(h.cfg.MaxInFlight) {
		h.inFlight.Add(-1)
		return h.refuse(ctx, req, errBusy, "", 1)
	}
	defer h.inFlight.Add(-1)
	return h.publish(ctx, req, cred, idemKey, body, now)
}

func (h *Handler) publish(ctx *fasthttp.RequestCtx, req *request, cred *auth.Credential, idemKey, body []byte, now time.Time) int {
	kind := string(req.kind)
	subject := h.cfg.SubjectPrefix + "." + cred.Org + "." + string(req.app) + "." + kind
	app := subject[len(h.cfg.SubjectPrefix)+len(cred.Org)+2 : len(subject)-len(kind)-1]
	var msgID string
	if idemKey != nil {
		msgID = scopedMsgID(cred.Org, app, req.kind, idemKey)
	} else {
		var buf [64]byte
		msgID = string(strconv.AppendUint(append(buf[:0], h.idPrefix...), h.idSeq.Add(1), 10))
	}
	out := msgPool.Get().(*outMsg)
	defer msgPool.Put(out)
	out.set(hdrMsgID, msgID)
	out.set(hdrOrg, cred.Org)
	out.set(hdrApp, app)
	out.set(hdrKind, kind)
	out.set(hdrCredential, cred.ID)
	out.set(hdrReceivedAt, now.UTC().Format(time.RFC3339Nano))
	if idemKey != nil {
		out.msg.Header[hdrIdempotencyKey] = out.idem
		out.idem[0] = string(idemKey)
	} else {
		delete(out.msg.Header, hdrIdempotencyKey)
	}
	out.msg.Subject = subject
	// The body itself, not a copy: the publisher is done with the message
	// when Publish returns, and the body lives until this handler returns.
	out.msg.Data = body
	msg := &out.msg

	pubStart := time.Now()
	// Not ctx: fasthttp cancels it at shutdown, and in-flight requests must
	// finish their acks then. The publish timeout bounds the wait.
	ack, err := h.pub.Publish(context.Background(), msg)
	if err != nil {
		why := h.failureReason(err)
		h.metrics.PublishFailure(why)
		h.logError(failedPublish, why, req, err)
		return h.refuse(ctx, req, errUnavailable, "", 1)
	}
	h.metrics.Published(req.kind, ack.Duplicate, time.Since(pubStart))
	if !ack.Duplicate {
		h.metrics.Accepted(cred.Org, app, req.kind, cred.ID, now)
	}

	ctx.SetStatusCode(fasthttp.StatusAccepted)
	ctx.Response.Header.SetContentTypeBytes(contentTypeJSON)
	var buf [256]byte
	b := append(buf[:0], `{"id":"`...)
	b = append(b, msgID...)
	b = append(b, `","stream":`...)
	b = strconv.AppendQuote(b, ack.Stream)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, ack.Seq, 10)
	b = append(b, `,"duplicate":`...)
	b = strconv.AppendBool(b, ack.Duplicate)
	b = append(b, '}')
	ctx.SetBody(b) // copies
	return fasthttp.StatusAccepted
}

// Headers of a stored message, as the contract names them.
const (
	hdrMsgID          = "Nats-Msg-Id"
	hdrOrg            = "Hook-Org"
	hdrApp            = "Hook-App"
	hdrKind           = "Hook-Kind"
	hdrCredential     = "Hook-Credential"
	hdrReceivedAt     = "Hook-Received-At"
	hdrContentType    = "Content-Type"
	hdrIdempotencyKey = "Hook-Idempotency-Key"
)

// outMsg is a reusable outgoing message: its header map and value slices are
// made once, so a publish only sets strings.
type outMsg struct {
	msg  nats.Msg
	idem []string
}

var msgPool = sync.Pool{New: func() any {
	h := nats.Header{}
	for _, k := range []string{hdrMsgID, hdrOrg, hdrApp, hdrKind, hdrCredential, hdrReceivedAt} {
		h[k] = make([]string, 1)
	}
	h[hdrContentType] = []string{"application/json"}
	return &outMsg{msg: nats.Msg{Header: h}, idem: make([]string, 1)}
}}

func (o *outMsg) set(key, value string) { o.msg.Header[key][0] = value }

// scopedMsgID turns a sender's Idempotency-Key into a Nats-Msg-Id of its
// organization, application and kind, so two organizations never collide.
func scopedMsgID(org, app string, kind auth.Kind, key []byte) string {
	// Names are at most 63 bytes, the kind 6, the key 200: it fits on the stack.
	var buf [3*64 + 8 + 200]byte
	b := append(append(append(append(append(append(append(buf[:0],
		org...), 0), app...), 0), kind...), 0), key...)
	sum := auth.Sum256(b)
	var id [2 + 32]byte
	copy(id[:], "k-")
	hex.Encode(id[2:], sum[:16])
	return string(id[:])
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
		"app", safeApp(req.app), "credential", req.credID, "remote", ctx.RemoteIP().String()}
	if leftOut > 0 {
		attrs = append(attrs, "refusals_not_logged_since_last", leftOut)
	}
	h.log.Log(context.Background(), level, "request refused", attrs...)
	return r.status
}

// logError logs a request's failure at warn: every one at debug, else
// sampled per kind of failure.
func (h *Handler) logError(what, why string, req *request, err error) {
	var leftOut int64
	if !h.log.Enabled(context.Background(), slog.LevelDebug) {
		var ok bool
		if ok, leftOut = h.failLogs[failKind{what, why}].Allow(); !ok { // every kind is made in New
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

// bearerOrBasic extracts the token of an Authorization header. present is
// false when there is no token at all (no header, or an empty one); token is
// nil for a header that cannot hold one (another scheme, bad Basic encoding).
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

// equalFold compares s with a lowercase ASCII word, ignoring case.
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

var mediaJSON = []byte("application/json")

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

var headerIdempotencyKey = []byte("Idempotency-Key")

// idempotencyKey returns the request's Idempotency-Key (nil when absent); ok
// is false when it is empty, too long, not visible ASCII, or given twice.
func idempotencyKey(hdr *fasthttp.RequestHeader) (key []byte, ok bool) {
	n := 0
	for k, v := range hdr.All() {
		if equalFoldHeader(k, headerIdempotencyKey) {
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

func equalFoldHeader(a, b []byte) bool { return len(a) == len(b) && bytes.EqualFold(a, b) }

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

func retrySeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}
