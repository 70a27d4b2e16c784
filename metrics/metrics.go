// Package metrics holds the gateway's Prometheus collectors, on a registry of
// its own, and the listener that serves them with the health endpoints.
package metrics

import (
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hookgate/hookgate/auth"
)

// Route is the route label of a request.
type Route int

const (
	RouteOther Route = iota
	RouteHits
	RouteDeploys
	numRoutes
)

var routeNames = [numRoutes]string{"other", "hits", "deploys"}

func (r Route) String() string { return routeNames[r] }

// Codes the gateway answers with; each gets its pre-resolved counters.
var codes = []int{202, 400, 401, 403, 404, 405, 413, 415, 429, 500, 503}

// Auth failure reasons of hookgate_auth_failures_total.
const (
	AuthMissing     = "missing"
	AuthMalformed   = "malformed"
	AuthInvalid     = "invalid"
	AuthForbidden   = "forbidden"
	AuthRateLimited = "rate_limited"
	AuthSignature   = "signature" // a signed request that does not verify
)

// Publish failure reasons of hookgate_publish_failures_total.
const (
	PublishTimeout      = "timeout"
	PublishDisconnected = "disconnected"
	PublishError        = "error"
)

// requestBuckets suit a gateway whose requests take tens of microseconds
// (a refusal) to seconds (an ack wait up to the publish timeout).
var requestBuckets = []float64{
	.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10,
}

// Options turns on the views whose series depend on what senders do; each
// has a hard cap on its series (a cap of 0: no series, every webhook counts
// as dropped).
type Options struct {
	PerApp         bool // hookgate_app_webhooks_total{org,app,kind}
	PerAppMax      int
	CredentialSeen bool // hookgate_credential_last_seen_timestamp_seconds{org,credential}
	CredentialMax  int
}

// The series caps' defaults, the contract's.
const (
	DefaultPerAppMax     = 1000
	DefaultCredentialMax = 1000
)

// DefaultOptions are the contract's: last-seen times on, per-application
// counts off.
func DefaultOptions() Options {
	return Options{PerAppMax: DefaultPerAppMax, CredentialSeen: true, CredentialMax: DefaultCredentialMax}
}

// Metrics is every collector of one gateway. Two gateways in one process each
// have their own.
type Metrics struct {
	Registry *prometheus.Registry

	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	authFailures    *prometheus.CounterVec
	published       *prometheus.CounterVec
	publishFailures *prometheus.CounterVec
	publishDuration prometheus.Histogram
	cacheRequests   *prometheus.CounterVec
	tokenEvents     *prometheus.CounterVec
	natsConnected   prometheus.Gauge
	streamMsgs      prometheus.Gauge
	streamBytes     prometheus.Gauge
	streamMaxBytes  prometheus.Gauge

	// Pre-resolved children: the hot path does no label lookups.
	reqByCode  [numRoutes]map[int]prometheus.Counter
	durByRoute [numRoutes]prometheus.Observer
	cacheHit   prometheus.Counter
	cacheMiss  prometheus.Counter
	authByWhy  map[string]prometheus.Counter
	pubByKind  map[auth.Kind]prometheus.Counter
	pubFailBy  map[string]prometheus.Counter
	eventByOp  map[auth.EventOp]prometheus.Counter

	perApp   *capped[[3]string, prometheus.Counter] // org, app, kind; nil: off
	credSeen *capped[[2]string, prometheus.Gauge]   // org, credential; nil: off
}

// New registers the gateway's collectors, the Go and process collectors and
// hookgate_build_info on a fresh registry; opts turns on the views whose
// series depend on what senders do.
func New(version string, opts Options) *Metrics {
	m := newCollectors()
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hookgate_build_info",
		Help: "Always 1; labels say which build runs.",
	}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(version, runtime.Version()).Set(1)
	m.Registry.MustRegister(
		m.requests, m.requestDuration, m.authFailures, m.published, m.publishFailures,
		m.publishDuration, m.cacheRequests, m.tokenEvents, m.natsConnected, buildInfo,
		m.streamMsgs, m.streamBytes, m.streamMaxBytes,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.resolveLabels()
	if opts.PerApp {
		m.perApp = newPerApp(m.Registry, opts.PerAppMax)
	}
	if opts.CredentialSeen {
		m.credSeen = newCredentialSeen(m.Registry, opts.CredentialMax)
	}
	return m
}

// newCollectors makes the collectors every gateway has.
func newCollectors() *Metrics {
	return &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookgate_http_requests_total",
			Help: "Webhook listener requests by route and status code.",
		}, []string{"route", "code"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hookgate_http_request_duration_seconds",
			Help:    "Time from request read to reply, by route.",
			Buckets: requestBuckets,
		}, []string{"route"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookgate_auth_failures_total",
			Help: "Requests refused by authentication or authorization, by reason.",
		}, []string{"reason"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookgate_published_messages_total",
			Help: "Webhooks stored in JetStream (acknowledged, duplicates excluded), by kind.",
		}, []string{"kind"}),
		publishFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookgate_publish_failures_total",
			Help: "Webhooks answered 503 because NATS did not take them (the publish, or the token read for a token not in memory), by reason.",
		}, []string{"reason"}),
		publishDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hookgate_publish_duration_seconds",
			Help:    "Time from publish to JetStream ack.",
			Buckets: requestBuckets,
		}),
		cacheRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookgate_token_cache_requests_total",
			Help: "Token lookups answered by the cache (hit) or the bucket (miss).",
		}, []string{"result"}),
		tokenEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookgate_token_events_total",
			Help: "Credential events applied from the bucket, by operation.",
		}, []string{"op"}),
		natsConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hookgate_nats_connected",
			Help: "1 while the gateway's NATS connection is up.",
		}),
		streamMsgs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hookgate_stream_messages",
			Help: "Messages in the webhook stream, as last read (every few seconds).",
		}),
		streamBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hookgate_stream_bytes",
			Help: "Bytes in the webhook stream, as last read (every few seconds).",
		}),
		streamMaxBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hookgate_stream_max_bytes",
			Help: "The webhook stream's byte limit; -1 when it has none.",
		}),
	}
}

// resolveLabels looks up, once, the series of every label value known in
// advance: the request path then costs no label hashing.
func (m *Metrics) resolveLabels() {
	for r := range numRoutes {
		m.reqByCode[r] = make(map[int]prometheus.Counter, len(codes))
		for _, c := range codes {
			m.reqByCode[r][c] = m.requests.WithLabelValues(r.String(), strconv.Itoa(c))
		}
		m.durByRoute[r] = m.requestDuration.WithLabelValues(r.String())
	}
	m.authByWhy = make(map[string]prometheus.Counter)
	for _, reason := range []string{AuthMissing, AuthMalformed, AuthInvalid, AuthForbidden, AuthRateLimited, AuthSignature} {
		m.authByWhy[reason] = m.authFailures.WithLabelValues(reason)
	}
	m.pubByKind = make(map[auth.Kind]prometheus.Counter)
	for _, k := range []auth.Kind{auth.KindHits, auth.KindDeploy} {
		m.pubByKind[k] = m.published.WithLabelValues(string(k))
	}
	m.pubFailBy = make(map[string]prometheus.Counter)
	for _, reason := range []string{PublishTimeout, PublishDisconnected, PublishError} {
		m.pubFailBy[reason] = m.publishFailures.WithLabelValues(reason)
	}
	m.cacheHit = m.cacheRequests.WithLabelValues("hit")
	m.cacheMiss = m.cacheRequests.WithLabelValues("miss")
	m.eventByOp = make(map[auth.EventOp]prometheus.Counter)
	for _, op := range []auth.EventOp{auth.EventPut, auth.EventDelete, auth.EventInvalid} {
		m.eventByOp[op] = m.tokenEvents.WithLabelValues(string(op))
	}
}

// newPerApp registers hookgate_app_webhooks_total with at most limit series.
func newPerApp(reg *prometheus.Registry, limit int) *capped[[3]string, prometheus.Counter] {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hookgate_app_webhooks_total",
		Help: "Webhooks stored, by organization, application and kind (at most --per-app-metrics-max series).",
	}, []string{"org", "app", "kind"})
	dropped := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hookgate_app_series_dropped_total",
		Help: "Webhooks not counted per application because the series cap was reached.",
	})
	reg.MustRegister(vec, dropped)
	return newCapped[[3]string](limit, dropped, func(l ...string) prometheus.Counter { return vec.WithLabelValues(l...) })
}

// newCredentialSeen registers hookgate_credential_last_seen_timestamp_seconds
// with at most limit series.
func newCredentialSeen(reg *prometheus.Registry, limit int) *capped[[2]string, prometheus.Gauge] {
	vec := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hookgate_credential_last_seen_timestamp_seconds",
		Help: "When each credential last had a webhook accepted (at most --credential-metrics-max series).",
	}, []string{"org", "credential"})
	dropped := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hookgate_credential_series_dropped_total",
		Help: "Accepted webhooks whose credential got no last-seen series because the cap was reached.",
	})
	reg.MustRegister(vec, dropped)
	return newCapped[[2]string](limit, dropped, func(l ...string) prometheus.Gauge { return vec.WithLabelValues(l...) })
}

// Request counts one reply of the webhook listener.
func (m *Metrics) Request(r Route, code int, d time.Duration) {
	c, ok := m.reqByCode[r][code]
	if !ok {
		c = m.requests.WithLabelValues(r.String(), strconv.Itoa(code))
	}
	c.Inc()
	m.durByRoute[r].Observe(d.Seconds())
}

// AuthFailure counts one refusal; reason is one of the Auth* constants.
func (m *Metrics) AuthFailure(reason string) { m.authByWhy[reason].Inc() }

// Published counts one stored message of kind and how long its ack took.
func (m *Metrics) Published(kind auth.Kind, duplicate bool, d time.Duration) {
	m.publishDuration.Observe(d.Seconds())
	if !duplicate {
		m.pubByKind[kind].Inc()
	}
}

// Accepted records a stored webhook in the per-application and last-seen
// views, when they are on. org and app are valid names, credential a record
// id (auth.ValidRecordID: hookgate's own, or a platform's, unique within org).
func (m *Metrics) Accepted(org, app string, kind auth.Kind, credential string, now time.Time) {
	if m.perApp != nil {
		k := [3]string{org, app, string(kind)}
		c, ok := m.perApp.get(k)
		if !ok {
			c, ok = m.perApp.add(k, org, app, string(kind))
		}
		if ok {
			c.Inc()
		}
	}
	if m.credSeen != nil {
		// A platform's ids need only be unique within an organization.
		k := [2]string{org, credential}
		g, ok := m.credSeen.get(k)
		if !ok {
			g, ok = m.credSeen.add(k, org, credential)
		}
		if ok {
			g.Set(float64(now.UnixNano()) / 1e9)
		}
	}
}

// PublishFailure counts one publish answered 503; reason is a Publish* constant.
func (m *Metrics) PublishFailure(reason string) { m.pubFailBy[reason].Inc() }

// WatchReadiness exports hookgate_ready: 1 while ready (what /readyz
// answers 200 to) returns nil, read at each scrape. It may be called once.
func (m *Metrics) WatchReadiness(ready ReadyFunc) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "hookgate_ready",
		Help: "1 while /readyz would answer 200: NATS connected, stream and bucket there, credential watch synced.",
	}, func() float64 {
		if ready() != nil {
			return 0
		}
		return 1
	}))
}

// SetStream sets the stream gauges: messages, bytes and the byte limit (-1:
// none).
func (m *Metrics) SetStream(msgs, bytes uint64, maxBytes int64) {
	m.streamMsgs.Set(float64(msgs))
	m.streamBytes.Set(float64(bytes))
	m.streamMaxBytes.Set(float64(maxBytes))
}

// SetNATSConnected sets hookgate_nats_connected.
func (m *Metrics) SetNATSConnected(up bool) {
	if up {
		m.natsConnected.Set(1)
	} else {
		m.natsConnected.Set(0)
	}
}

// CacheLookup implements auth.Observer.
func (m *Metrics) CacheLookup(hit bool) {
	if hit {
		m.cacheHit.Inc()
	} else {
		m.cacheMiss.Inc()
	}
}

// TokenEvent implements auth.Observer.
func (m *Metrics) TokenEvent(op auth.EventOp) { m.eventByOp[op].Inc() }

var _ auth.Observer = (*Metrics)(nil)
