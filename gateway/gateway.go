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
	"github.com/hookgate/hookgate/secretring"
)

// Gateway is a running hookgate.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	Metrics *metrics.Metrics

	embedded *server.Server
	nc       *nats.Conn
	pub      atomic.Pointer[bus.Publisher] // read by NATS callbacks
	store    *auth.Store
	ring     *secretring.File // nil: no key ring, signed requests refused
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
	leaving atomic.Bool // the shutdown delay has begun: not ready, connections close after their reply
}

// Start brings the gateway up and returns once both listeners listen. NATS
// may still be unreachable: the gateway then answers 503 and /readyz says why
// until it is. Cancel ctx to shut it down; Wait returns when it is down.
func Start(ctx context.Context, cfg Config) (*Gateway, error) {
	cfg.fillOptional()
	if err := cfg.Validate(); err != nil {
		return nil, &ConfigError{err}
	}
	g := &Gateway{cfg: cfg, log: cfg.Logger, Metrics: metrics.New(cfg.Version, cfg.Metrics), done: make(chan struct{}), fatal: make(chan error, 1)}
	g.Metrics.WatchReadiness(g.Ready)
	if err := g.start(ctx); err != nil {
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
func (g *Gateway) start(ctx context.Context) error {
	// A port in use or a bad certificate fails at once, before the embedded
	// server spends time recovering its store. The listeners themselves open
	// only once NATS is up: open earlier, they would complete handshakes into
	// the kernel's backlog, and senders would wait there instead of being
	// refused.
	tlsConf, err := g.checkListeners()
	if err != nil {
		return err
	}
	natsURL, mode, err := g.startNATS()
	if err != nil {
		return err
	}
	cache := g.cfg.Cache
	if cache.Logger == nil {
		cache.Logger = g.log
	}
	if g.ring, err = g.openSecretKeys(); err != nil {
		return err
	}
	if g.ring != nil && cache.Unsealer == nil {
		cache.Unsealer = g.ring
	}
	// The store exists before the connection: its callbacks use it.
	if g.store, err = auth.NewStore(bucketSource{g}, g.Metrics, cache); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	if err := g.connect(natsURL); err != nil {
		return err
	}
	g.handler = ingest.New(g.cfg.Ingest, g.store, g.pub.Load(), g.Metrics, g.log)
	g.http = ingest.NewServer(g.cfg.Server, g.handler)
	if err := g.openListeners(tlsConf); err != nil {
		return err
	}

	runCtx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go g.run(ctx, runCtx)

	g.log.Info("hookgate started", "version", g.cfg.Version, "listen", g.ln.Addr().String(), "tls", tlsConf != nil,
		"metrics_listen", g.mln.Addr().String(), "nats_mode", mode, "nats_url", redactURL(natsURL),
		"stream", g.cfg.Stream, "bucket", g.cfg.TokensBucket, "subject_prefix", g.cfg.Ingest.SubjectPrefix)
	return nil
}

// checkListeners loads the TLS certificate and checks that both listen
// addresses are free, without keeping them.
func (g *Gateway) checkListeners() (*tls.Config, error) {
	var tlsConf *tls.Config
	if g.cfg.TLSCert != "" || g.cfg.TLSKey != "" {
		var err error
		if tlsConf, err = ingest.TLSConfig(g.cfg.TLSCert, g.cfg.TLSKey); err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
	}
	if g.cfg.Listener == nil {
		if err := probeListen(g.cfg.Listen); err != nil {
			return nil, fmt.Errorf("gateway: webhook listener: %w", err)
		}
	}
	if g.cfg.MetricsLn == nil {
		if err := probeListen(g.cfg.MetricsListen); err != nil {
			return nil, fmt.Errorf("gateway: metrics listener: %w", err)
		}
	}
	return tlsConf, nil
}

// probeListen reports whether addr can be listened on now, without keeping it.
func probeListen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ln.Close()
}

// openListeners opens the webhook listener, capped and with TLS when
// configured, then the metrics listener.
func (g *Gateway) openListeners(tlsConf *tls.Config) error {
	var err error
	if g.ln = g.cfg.Listener; g.ln == nil {
		if g.ln, err = net.Listen("tcp", g.cfg.Listen); err != nil {
			return fmt.Errorf("gateway: webhook listener: %w", err)
		}
	}
	g.ln = ingest.LimitConns(g.ln, ingest.ConnLimits{
		PerAddress: g.cfg.Server.MaxConnsPerIP,
		Total:      g.cfg.Server.MaxConns,
		Plain:      tlsConf == nil,
		Trusted:    g.cfg.Ingest.TrustedProxies,
		Refused:    func(status int) { g.Metrics.Request(metrics.RouteOther, status, 0) },
		Logger:     g.log,
	})
	if tlsConf != nil {
		g.ln = tls.NewListener(g.ln, tlsConf)
	}
	if g.mln = g.cfg.MetricsLn; g.mln == nil {
		if g.mln, err = net.Listen("tcp", g.cfg.MetricsListen); err != nil {
			return fmt.Errorf("gateway: metrics listener: %w", err)
		}
	}
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
		g.err = g.delayShutdown(errc)
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

// delayShutdown is --shutdown-delay: /readyz turns 503 at once, so that load
// balancers and Kubernetes Services stop routing here, while the listener
// goes on accepting and serving (with Connection: close, so that kept-alive
// senders reconnect elsewhere) until the delay passes or Hurry closes. It
// returns a part's failure that ends it early.
func (g *Gateway) delayShutdown(errc <-chan error) error {
	d := g.cfg.ShutdownDelay
	if d <= 0 {
		return nil
	}
	g.leaving.Store(true)
	g.handler.CloseConnections()
	g.log.Info("not ready; serving until the shutdown delay ends", "delay", d.String())
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-g.cfg.Hurry:
		g.log.Info("shutdown delay cut short by a second signal")
	case err := <-errc:
		g.log.Error("stopping", "err", err)
		return err
	case err := <-g.fatal:
		g.log.Error("stopping", "err", err)
		return err
	}
	return nil
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

// Ready is /readyz: NATS connected, stream and bucket there, watch synced.
func (g *Gateway) Ready() error {
	switch {
	case g.leaving.Load():
		return errors.New("shutting down")
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
