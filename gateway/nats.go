package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/url"

	"github.com/nats-io/nats.go"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/bus"
	"github.com/hookgate/hookgate/ingest"
)

// This file is the gateway's NATS: the embedded server when no URL is
// given, and the connection with its callbacks.

// startNATS starts the embedded server when the config names no NATS URL. It
// returns the URL to connect to and the mode for the start-up log line.
func (g *Gateway) startNATS() (natsURL, mode string, err error) {
	if g.cfg.NATS.URL != "" {
		return g.cfg.NATS.URL, "url", nil
	}
	host, _, err := net.SplitHostPort(g.cfg.EmbeddedListen)
	if err != nil {
		return "", "", fmt.Errorf("gateway: --embedded-nats-listen %q: %w", g.cfg.EmbeddedListen, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		g.log.Warn("the embedded NATS server has no auth and listens beyond loopback: anyone who reaches it can read webhooks and write credentials",
			"embedded_nats_listen", g.cfg.EmbeddedListen)
	}
	g.embedded, err = bus.StartEmbedded(bus.EmbeddedConfig{Listen: g.cfg.EmbeddedListen, DataDir: g.cfg.DataDir,
		MaxPayload: embeddedMaxPayload(int64(g.cfg.Ingest.MaxBody)), Logger: g.log, Redact: auth.RedactKeys})
	if err != nil {
		return "", "", fmt.Errorf("gateway: %w", err)
	}
	return g.embedded.ClientURL(), "embedded", nil
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

// connect opens the gateway's NATS connection and its publisher. The
// credential store must exist: the connection's callbacks use it.
func (g *Gateway) connect(natsURL string) error {
	conn := g.cfg.NATS
	conn.URL = natsURL
	var extra []nats.Option
	if g.embedded != nil {
		// The gateway's own connection to its embedded server skips TCP:
		// an in-process pipe, no loopback syscalls per publish and ack.
		extra = append(extra, nats.InProcessServer(g.embedded))
	}
	var err error
	g.nc, err = bus.Connect(conn, g.connEvents(), extra...)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	g.Metrics.SetNATSConnected(g.nc.IsConnected())
	pub, err := bus.NewPublisher(g.nc, g.cfg.PublishTimeout)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	g.pub.Store(pub)
	return nil
}

// connEvents keeps the metrics, the credential store's trust and the
// publisher in step with the connection.
func (g *Gateway) connEvents() bus.ConnEvents {
	return bus.ConnEvents{
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
	}
}

// redactURL hides the password of a NATS URL in the log.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}
