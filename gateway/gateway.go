// Package gateway wires a running hookgate together: NATS (embedded or
// remote), the stream and bucket, the credential store and its watch, the
// webhook listener and the metrics listener, and their orderly shutdown.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/valyala/fasthttp"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/bus"
	"github.com/hookgate/hookgate/ingest"
	"github.com/hookgate/hookgate/metrics"
)

// Config is everything serve needs. Zero values take the contract's defaults
// where it names one.
type Config struct {
	Listen        string       // webhook listener address
	MetricsListen string       // metrics listener address
	Listener      net.Listener // if set, used instead of Listen (tests)
	MetricsLn     net.Listener // if set, used instead of MetricsListen

	NATS           bus.ConnConfig // URL empty: embedded server
	DataDir        string
	EmbeddedListen string
	// EmbeddedOverTCP makes the gateway reach its embedded server over TCP
	// like any client; by default it uses an in-process connection.
	EmbeddedOverTCP bool

	Stream         string
	SubjectPrefix  string
	TokensBucket   string
	Replicas       int
	DedupWindow    time.Duration
	PublishTimeout time.Duration

	Ingest          ingest.Config
	Server          ingest.ServerConfig
	ShutdownTimeout time.Duration
	Cache           auth.StoreConfig
	Metrics         metrics.Options

	TLSCert string // webhook listener certificate (PEM); with TLSKey
	TLSKey  string

	Version string
	Logger  *slog.Logger
}

func (c *Config) setDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Listen, ":8080")
	def(&c.MetricsListen, ":9180")
	def(&c.DataDir, "./data")
	def(&c.EmbeddedListen, "127.0.0.1:4222")
	def(&c.Stream, "HOOKS")
	def(&c.SubjectPrefix, "hooks")
	def(&c.TokensBucket, "hookgate-tokens")
	def(&c.Version, "dev")
	def(&c.NATS.Name, "hookgate")
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.DedupWindow <= 0 {
		c.DedupWindow = 2 * time.Minute
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.Ingest.MaxBody == 0 {
		c.Ingest.MaxBody = 262144
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Ingest.SubjectPrefix = c.SubjectPrefix
}

// Validate reports settings that cannot work.
func (c *Config) Validate() error {
	var errs []error
	if !validSubjectToken(c.SubjectPrefix, true) {
		errs = append(errs, fmt.Errorf("subject prefix %q: want NATS subject tokens without wildcards or spaces", c.SubjectPrefix))
	}
	if !validSubjectToken(c.Stream, false) {
		errs = append(errs, fmt.Errorf("stream name %q: want letters, digits, - or _", c.Stream))
	}
	if !validSubjectToken(c.TokensBucket, false) {
		errs = append(errs, fmt.Errorf("bucket name %q: want letters, digits, - or _", c.TokensBucket))
	}
	if c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas %d: JetStream allows 1 to 5", c.Replicas))
	}
	if c.Ingest.MaxBody <= 0 {
		errs = append(errs, fmt.Errorf("max body %d: must be positive", c.Ingest.MaxBody))
	}
	if c.Ingest.RateLimit < 0 || c.Ingest.RateBurst < 0 || c.Ingest.AuthFailureBurst < 0 {
		errs = append(errs, errors.New("rate limits and bursts cannot be negative"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if err := c.NATS.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ConfigError is a Config that Start refused before opening anything: a
// mistake of whoever wrote it, not of the machine.
type ConfigError struct{ Err error }

// Error puts Validate's joined problems on one line.
func (e *ConfigError) Error() string {
	return "gateway: config: " + strings.ReplaceAll(e.Err.Error(), "\n", "; ")
}

func (e *ConfigError) Unwrap() error { return e.Err }

// probeListen reports whether addr can be listened on now, without keeping it.
func probeListen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ln.Close()
}

func validSubjectToken(s string, dots bool) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		case c == '.' && dots && i > 0 && i < len(s)-1 && s[i-1] != '.':
		default:
			return false
		}
	}
	return true
}

// Gateway is a running hookgate.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	Metrics *metrics.Metrics

	embedded *server.Server
	nc       *nats.Conn
	pub      atomic.Pointer[bus.Publisher] // read by NATS callbacks
	store    *auth.Store
	handler  *ingest.Handler
	http     *fasthttp.Server
	ln, mln  net.Listener

	kv     atomic.Pointer[jetstream.KeyValue]
	synced atomic.Bool            // first sync of the credential watch done
	setup  atomic.Bool            // stream and bucket were found or created
	gone   atomic.Pointer[string] // set while the stream or the bucket is missing after setup

	cancel  context.CancelFunc
	done    chan struct{}
	err     error
	fatal   chan error  // a part that cannot go on
	closing atomic.Bool // shutdown has begun: closes are ours
}

// Start brings the gateway up and returns once both listeners listen. NATS
// may still be unreachable: the gateway then answers 503 and /readyz says why
// until it is. Cancel ctx to shut it down; Wait returns when it is down.
func Start(ctx context.Context, cfg Config) (*Gateway, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, &ConfigError{err}
	}
	g := &Gateway{cfg: cfg, log: cfg.Logger, Metrics: metrics.New(cfg.Version, cfg.Metrics), done: make(chan struct{}), fatal: make(chan error, 1)}
	if err := g.start(ctx, cfg); err != nil {
		if g.ln != nil && cfg.Listener == nil {
			g.ln.Close() // ours: the metrics listener, opened last, failed
		}
		g.closeAll()
		return nil, err
	}
	return g, nil
}

// start opens the gateway's parts in order; on error Start closes what it
// opened.
func (g *Gateway) start(ctx context.Context, cfg Config) error {
	var err error
	// A port in use or a bad certificate fails at once, before the embedded
	// server spends time recovering its store. The listeners themselves open
	// only once NATS is up: open earlier, they would complete handshakes into
	// the kernel's backlog, and senders would wait there instead of being
	// refused.
	var tlsConf *tls.Config
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		if tlsConf, err = ingest.TLSConfig(cfg.TLSCert, cfg.TLSKey); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
	}
	if cfg.Listener == nil {
		if err := probeListen(cfg.Listen); err != nil {
			return fmt.Errorf("gateway: webhook listener: %w", err)
		}
	}
	if cfg.MetricsLn == nil {
		if err := probeListen(cfg.MetricsListen); err != nil {
			return fmt.Errorf("gateway: metrics listener: %w", err)
		}
	}

	natsURL := cfg.NATS.URL
	mode := "url"
	if natsURL == "" {
		mode = "embedded"
		if err := g.startEmbedded(); err != nil {
			return err
		}
		natsURL = g.embedded.ClientURL()
	}
	// The store exists before the connection: its callbacks use it.
	if cfg.Cache.Logger == nil {
		cfg.Cache.Logger = g.log
	}
	if g.store, err = auth.NewStore(bucketSource{g}, g.Metrics, cfg.Cache); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	conn := cfg.NATS
	conn.URL = natsURL
	var extra []nats.Option
	if g.embedded != nil && !cfg.EmbeddedOverTCP {
		// The gateway's own connection to its embedded server skips TCP:
		// an in-process pipe, no loopback syscalls per publish and ack.
		extra = append(extra, nats.InProcessServer(g.embedded))
	}
	g.nc, err = bus.Connect(conn, bus.ConnEvents{
		Disconnected: func(err error) {
			g.Metrics.SetNATSConnected(false)
			if err == nil && g.closing.Load() {
				return // we closed it: shutting down
			}
			// Deletes written meanwhile reach us only after the reconnect:
			// until the watch has caught up, read the bucket for every token.
			g.store.Distrust("NATS disconnected")
			g.log.Warn("NATS disconnected; webhooks get 503 until it is back", "err", err)
		},
		Reconnected: func(url string) {
			g.Metrics.SetNATSConnected(true)
			g.log.Info("NATS connected", "url", url)
			if p := g.pub.Load(); p != nil {
				p.Reconnected()
			}
		},
		Error: func(err error) { g.log.Warn("NATS error", "err", auth.RedactKeys(err.Error())) },
		Closed: func() {
			if !g.closing.Load() {
				// nats.go gives up only on errors it deems permanent (such
				// as repeated authorization failures): a gateway that can
				// never publish again must stop, not answer 503 forever.
				select {
				case g.fatal <- errors.New("gateway: NATS connection closed for good (check NATS credentials and permissions)"):
				default:
				}
			}
		},
	}, extra...)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	g.Metrics.SetNATSConnected(g.nc.IsConnected())
	pub, err := bus.NewPublisher(g.nc, cfg.PublishTimeout)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	g.pub.Store(pub)

	g.handler = ingest.New(cfg.Ingest, g.store, pub, g.Metrics, g.log)
	g.http = ingest.NewServer(cfg.Server, g.handler)
	if g.ln = cfg.Listener; g.ln == nil {
		if g.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("gateway: webhook listener: %w", err)
		}
	}
	g.ln = ingest.LimitConns(g.ln, ingest.ConnLimits{
		PerAddress: cfg.Server.MaxConnsPerIP,
		Total:      cfg.Server.MaxConns,
		Plain:      tlsConf == nil,
		Refused:    func(status int) { g.Metrics.Request(metrics.RouteOther, status, 0) },
		Logger:     g.log,
	})
	if tlsConf != nil {
		g.ln = tls.NewListener(g.ln, tlsConf)
	}
	if g.mln = cfg.MetricsLn; g.mln == nil {
		if g.mln, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			return fmt.Errorf("gateway: metrics listener: %w", err)
		}
	}

	runCtx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go g.run(ctx, runCtx)

	g.log.Info("hookgate started", "version", cfg.Version, "listen", g.ln.Addr().String(), "tls", tlsConf != nil,
		"metrics_listen", g.mln.Addr().String(), "nats_mode", mode, "nats_url", redactURL(natsURL),
		"stream", cfg.Stream, "bucket", cfg.TokensBucket, "subject_prefix", cfg.SubjectPrefix)
	return nil
}

// Addr is the webhook listener's address.
func (g *Gateway) Addr() net.Addr { return g.ln.Addr() }

// MetricsAddr is the metrics listener's address.
func (g *Gateway) MetricsAddr() net.Addr { return g.mln.Addr() }

// NATSURL is the URL of the NATS server in use (the embedded one's when embedded).
func (g *Gateway) NATSURL() string {
	if g.embedded != nil {
		return g.embedded.ClientURL()
	}
	return g.cfg.NATS.URL
}

// Wait blocks until the gateway is down and returns why it stopped, nil for a
// requested shutdown.
func (g *Gateway) Wait() error {
	<-g.done
	return g.err
}

func (g *Gateway) startEmbedded() error {
	host, _, err := net.SplitHostPort(g.cfg.EmbeddedListen)
	if err != nil {
		return fmt.Errorf("gateway: --embedded-nats-listen %q: %w", g.cfg.EmbeddedListen, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		g.log.Warn("the embedded NATS server has no auth and listens beyond loopback: anyone who reaches it can read webhooks and write credentials",
			"embedded_nats_listen", g.cfg.EmbeddedListen)
	}
	g.embedded, err = bus.StartEmbedded(bus.EmbeddedConfig{Listen: g.cfg.EmbeddedListen, DataDir: g.cfg.DataDir,
		MaxPayload: embeddedMaxPayload(int64(g.cfg.Ingest.MaxBody)), Logger: g.log, Redact: auth.RedactKeys})
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	return nil
}

// embeddedMaxPayload is the embedded server's max_payload for a --max-body:
// its 1 MiB default unless the body and the gateway's headers need more, up
// to the 64 MiB that nats-server accepts (its default max_pending). Past
// that, fitBroker lowers --max-body with a warning.
func embeddedMaxPayload(maxBody int64) int32 {
	const defaultPayload, ceiling = 1 << 20, 64 << 20
	need := maxBody + ingest.HeaderAllowance
	if need <= defaultPayload {
		return 0
	}
	return int32(min(need, ceiling))
}

// run serves until ctx ends or a part fails, then shuts down in order.
func (g *Gateway) run(ctx, runCtx context.Context) {
	defer close(g.done)
	errc := make(chan error, 4)
	var wg sync.WaitGroup
	spawn := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				errc <- err
			}
		}()
	}
	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		if err := g.http.Serve(g.ln); err != nil {
			errc <- fmt.Errorf("gateway: webhook listener: %w", err)
		}
	}()
	// The metrics listener stops after the drain, inside the reserve.
	spawn(func() error {
		return metrics.Serve(runCtx, g.mln, g.Metrics.Handler(g.Ready), min(250*time.Millisecond, g.shutdownReserve()/2))
	})
	spawn(func() error { return g.bootstrap(runCtx) })
	spawn(func() error { return g.watchSetup(runCtx) })

	select {
	case <-ctx.Done():
		g.log.Info("shutting down", "timeout", g.cfg.ShutdownTimeout.String())
	case g.err = <-errc:
		g.log.Error("stopping", "err", g.err)
	case g.err = <-g.fatal:
		g.log.Error("stopping", "err", g.err)
	}

	// Stop accepting, let requests in flight finish their acks and replies.
	// One deadline covers the whole stop: the drain gets all of
	// --shutdown-timeout but a reserve for the metrics listener, NATS and
	// the embedded server after it.
	sctx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout-g.shutdownReserve())
	defer cancel()
	if err := g.http.ShutdownWithContext(sctx); err != nil {
		g.log.Warn("webhook listener did not drain in time", "err", err)
	}
	<-httpDone
	g.closing.Store(true)
	g.cancel()
	wg.Wait()
	g.closeAll()
	g.log.Info("hookgate stopped")
}

// shutdownReserve is the part of --shutdown-timeout kept, after the drain,
// for the metrics listener, NATS and the embedded server.
func (g *Gateway) shutdownReserve() time.Duration {
	return min(g.cfg.ShutdownTimeout/4, 2*time.Second)
}

// closeAll closes NATS, then the embedded server last.
func (g *Gateway) closeAll() {
	g.closing.Store(true)
	if g.nc != nil {
		g.nc.Close()
	}
	if g.store != nil {
		g.store.Close()
	}
	if g.embedded != nil {
		g.embedded.Shutdown()
		g.embedded.WaitForShutdown()
	}
}

// bootstrap makes sure the stream and bucket exist, then runs the credential
// watch for the gateway's life. NATS may be down at first: it retries.
func (g *Gateway) bootstrap(ctx context.Context) error {
	js, err := jetstream.New(g.nc)
	if err != nil {
		return fmt.Errorf("gateway: jetstream: %w", err)
	}
	var kv jetstream.KeyValue
	for attempt := 0; ; attempt++ {
		kv, err = g.ensure(ctx, js)
		if err == nil {
			break
		}
		if attempt%20 == 0 {
			g.log.Warn("waiting for JetStream to set up the stream and bucket", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
	g.kv.Store(&kv)
	g.setup.Store(true)
	for {
		err := g.store.Watch(ctx, kv, bus.KVNextRevision(g.nc, g.cfg.TokensBucket), func() {
			g.synced.Store(true)
			g.log.Info("credential watch synced", "bucket", g.cfg.TokensBucket)
		})
		if ctx.Err() != nil {
			return nil
		}
		// The watch could not be (re)created: the cache may miss events from
		// now on, so stop trusting it until a new watch has synced.
		g.synced.Store(false)
		g.store.Distrust("credential watch stopped")
		g.log.Warn("credential watch stopped; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (g *Gateway) ensure(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stream, err := bus.EnsureStream(ctx, js, bus.StreamSpec{
		Name: g.cfg.Stream, SubjectPrefix: g.cfg.SubjectPrefix, Replicas: g.cfg.Replicas, Duplicates: g.cfg.DedupWindow,
	})
	if err != nil {
		return nil, err
	}
	g.fitBroker(stream.CachedInfo().Config.MaxMsgSize)
	g.followDuplicateWindow(stream.CachedInfo().Config.Duplicates)
	return bus.EnsureBucket(ctx, js, g.cfg.TokensBucket, g.cfg.Replicas)
}

// followDuplicateWindow gives the publisher the stream's own duplicate window
// (an existing stream keeps the operator's), which bounds its re-sends.
func (g *Gateway) followDuplicateWindow(d time.Duration) {
	p := g.pub.Load()
	if p == nil || d <= 0 || p.SetDuplicateWindow(d) == d {
		return
	}
	if d/2 < g.cfg.PublishTimeout {
		g.log.Warn("the stream's duplicate window is short: an unacknowledged publish is re-sent only in its first half, then waited for until --publish-timeout",
			"stream", g.cfg.Stream, "duplicate_window", d, "publish_timeout", g.cfg.PublishTimeout)
	}
}

// fitBroker makes --max-body agree with the broker: a body the broker would
// refuse must be a 413 at the door, never a 503 or 500 after it.
func (g *Gateway) fitBroker(streamMaxMsgSize int32) {
	maxPayload := g.nc.MaxPayload()
	before := g.handler.MaxBody()
	after := g.handler.FitBroker(maxPayload, int64(streamMaxMsgSize))
	if after < before {
		g.log.Warn("--max-body lowered to fit the broker: larger bodies get 413",
			"max_body", before, "now", after, "nats_max_payload", maxPayload,
			"stream_max_msg_size", streamMaxMsgSize, "header_allowance", ingest.HeaderAllowance)
	}
}

// Ready is /readyz: NATS connected, stream and bucket there, watch synced.
func (g *Gateway) Ready() error {
	switch {
	case !g.nc.IsConnected():
		return errors.New("NATS is not connected")
	case !g.setup.Load():
		return errors.New("stream and bucket not set up yet")
	case !g.synced.Load():
		return errors.New("credential watch has not synced yet")
	}
	if gone := g.gone.Load(); gone != nil {
		return errors.New(*gone)
	}
	return nil
}

// setupCheckInterval is how often watchSetup looks for the stream and bucket.
const setupCheckInterval = 2 * time.Second

// watchSetup keeps /readyz true to the contract after bootstrap: the stream
// or the bucket can be deleted under a running gateway (by an operator, or
// lost with a cluster), and then the gateway is not ready until it is back.
// Only a definite "not found" counts; a disconnection is Ready's own check.
func (g *Gateway) watchSetup(ctx context.Context) error {
	js, err := jetstream.New(g.nc)
	if err != nil {
		return fmt.Errorf("gateway: jetstream: %w", err)
	}
	t := time.NewTicker(setupCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if !g.setup.Load() || !g.nc.IsConnected() {
			continue
		}
		missing, known := g.findSetup(ctx, js)
		if !known {
			continue
		}
		was := g.gone.Load()
		switch {
		case missing != "" && (was == nil || *was != missing):
			g.gone.Store(&missing)
			g.log.Error("not ready: webhooks cannot be stored until it is recreated", "missing", missing)
		case missing == "" && was != nil:
			g.gone.Store(nil)
			g.log.Info("stream and bucket are back", "stream", g.cfg.Stream, "bucket", g.cfg.TokensBucket)
		}
	}
}

// findSetup says which of the stream and bucket is missing ("" for none);
// known is false when JetStream did not answer either way.
func (g *Gateway) findSetup(ctx context.Context, js jetstream.JetStream) (missing string, known bool) {
	ctx, cancel := context.WithTimeout(ctx, setupCheckInterval)
	defer cancel()
	s, err := js.Stream(ctx, g.cfg.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return "stream " + g.cfg.Stream + " does not exist", true
	case err != nil:
		return "", false
	}
	g.followDuplicateWindow(s.CachedInfo().Config.Duplicates)
	_, err = js.KeyValue(ctx, g.cfg.TokensBucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		return "credentials bucket " + g.cfg.TokensBucket + " does not exist", true
	case err != nil:
		return "", false
	}
	return "", true
}

// bucketSource reads the bucket once bootstrap has found it.
type bucketSource struct{ g *Gateway }

var errNoBucket = errors.New("gateway: credentials bucket not set up yet")

func (s bucketSource) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	kv := s.g.kv.Load()
	if kv == nil {
		return nil, errNoBucket
	}
	return (*kv).Get(ctx, key)
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}
