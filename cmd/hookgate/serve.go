package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/nats-io/nats.go"

	"github.com/hookgate/hookgate/bus"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/ingest"
	"github.com/hookgate/hookgate/metrics"
)

// natsAuth are the NATS auth flags every command that talks to NATS takes.
type natsAuth struct {
	NatsCreds    string `name:"nats-creds" placeholder:"FILE" help:"NATS credentials file (JWT and nkey seed)."`
	NatsUser     string `name:"nats-user" help:"NATS user name."`
	NatsPassword string `name:"nats-password" help:"NATS password (for --nats-user)."`
	NatsToken    string `name:"nats-token" help:"NATS authentication token."`
	NatsNkey     string `name:"nats-nkey" placeholder:"FILE" help:"NATS nkey seed file."`
	NatsTLSCA    string `name:"nats-tls-ca" placeholder:"FILE" help:"CA certificate to verify the NATS server."`
	NatsTLSCert  string `name:"nats-tls-cert" placeholder:"FILE" help:"Client certificate for NATS (with --nats-tls-key)."`
	NatsTLSKey   string `name:"nats-tls-key" placeholder:"FILE" help:"Client key for NATS."`
}

// dial connects with the auth flags; flags that do not go together are a
// usage error (exit 2), not a failure to connect.
func (a natsAuth) dial(url, name string) (*nats.Conn, error) {
	cc := a.conn(url, name)
	if err := cc.Validate(); err != nil {
		return nil, usageError{err}
	}
	return bus.Dial(cc)
}

func (a natsAuth) conn(url, name string) bus.ConnConfig {
	return bus.ConnConfig{
		URL: url, Name: name, Creds: a.NatsCreds, User: a.NatsUser, Password: a.NatsPassword,
		Token: a.NatsToken, NKey: a.NatsNkey, TLSCA: a.NatsTLSCA, TLSCert: a.NatsTLSCert, TLSKey: a.NatsTLSKey,
	}
}

// natsNames are the stream and bucket that serve creates and the other
// commands use. Every command takes all four (some hidden, see sharedOnly),
// so one set of HOOKGATE_ variables works for every command.
type natsNames struct {
	Stream        string `default:"${default_stream}" help:"${stream_help}"`
	SubjectPrefix string `default:"${default_subject_prefix}" help:"${subject_prefix_help}"`
	TokensBucket  string `default:"${default_tokens_bucket}" help:"JetStream key-value bucket of credentials."`
	Replicas      int    `default:"${default_replicas}" help:"${replicas_help}"`
}

// The help of natsNames as serve says it; tail and token say it their way
// (the set tag where they embed natsNames).
var natsNamesHelp = kong.Vars{
	"stream_help":         "JetStream stream for accepted webhooks.",
	"subject_prefix_help": "Subjects are <prefix>.<org>.<app>.<kind>.",
	"replicas_help":       "Replicas of the stream and bucket when serve creates them.",
}

type serveCmd struct {
	Listen             string `default:"${default_listen}" help:"Webhook listener address."`
	MetricsListen      string `default:"${default_metrics_listen}" help:"Address of /metrics, /healthz and /readyz."`
	NatsURL            string `name:"nats-url" default:"" help:"NATS server URL(s), comma separated. Empty: start an embedded NATS server with JetStream."`
	DataDir            string `default:"${default_data_dir}" help:"JetStream storage of the embedded NATS server."`
	EmbeddedNatsListen string `name:"embedded-nats-listen" default:"${default_embedded_listen}" help:"Where the embedded NATS server listens, for the CLI and consumers. It has no auth: keep it on loopback."`
	natsNames
	DedupWindow          time.Duration `default:"${default_dedup_window}" help:"The stream's duplicate window when serve creates it: the Idempotency-Key horizon; the gateway re-sends an unacknowledged publish only in the first half of the stream's window."`
	StreamMaxAge         time.Duration `default:"${default_stream_max_age}" help:"The stream's max age when serve creates it: older webhooks are removed (0: none)."`
	StreamMaxBytes       int64         `default:"${default_stream_max_bytes}" help:"The stream's size limit in bytes when serve creates it: past it the oldest webhooks are removed (0 or -1: none)."`
	MaxBody              int           `default:"${default_max_body}" help:"Largest accepted body, bytes."`
	PublishTimeout       time.Duration `default:"${default_publish_timeout}" help:"Longest wait for the JetStream ack before 503."`
	ReadTimeout          time.Duration `default:"${default_read_timeout}" help:"Longest a client may take to send one whole request."`
	WriteTimeout         time.Duration `default:"${default_write_timeout}" help:"Longest a client may take to read one reply."`
	IdleTimeout          time.Duration `default:"${default_idle_timeout}" help:"Keep-alive connections idle longer are closed."`
	ShutdownTimeout      time.Duration `default:"${default_shutdown_timeout}" help:"Longest drain on SIGTERM or SIGINT."`
	ShutdownDelay        time.Duration `default:"${default_shutdown_delay}" help:"After SIGTERM or SIGINT, go on accepting and serving this long while /readyz says 503, so a load balancer stops routing here before the drain; a second signal ends it early."`
	MaxHeaderSize        int           `default:"${default_max_header_size}" help:"Largest request header block, bytes."`
	MaxConnsPerIP        int           `name:"max-conns-per-ip" default:"${default_max_conns_per_ip}" help:"Most open connections from one client address."`
	MaxConns             int           `default:"${default_max_conns}" help:"Most open connections in all."`
	MaxInFlight          int           `default:"${default_max_in_flight}" help:"Most webhooks waiting for their ack at once; beyond it 503."`
	RateLimit            float64       `default:"0" help:"Requests per second per credential (0: off)."`
	RateBurst            int           `default:"0" help:"Burst per credential (0 with --rate-limit: one second's worth, at least 1)."`
	AuthFailureRate      float64       `default:"${default_auth_failure_rate}" help:"Refused-token requests per second per client address (0: off)."`
	AuthFailureBurst     int           `default:"${default_auth_failure_burst}" help:"Burst of refused-token requests per client address."`
	TrustedProxies       string        `name:"trusted-proxies" default:"" placeholder:"CIDRS" help:"Comma-separated CIDRs or addresses of proxies in front (an Ingress, a load balancer): for their connections the client is the right-most X-Forwarded-For address not itself trusted. Empty: the TCP peer is the client."`
	SecretKeys           string        `name:"secret-keys" placeholder:"FILE" default:"" help:"Key ring that unseals signing secrets (default: secret-keys in --data-dir, created there on the embedded default; with --nats-url give every gateway the same file). SIGHUP re-reads it."`
	TLSCert              string        `name:"tls-cert" placeholder:"FILE" help:"Serve webhooks over TLS with this certificate (PEM, with --tls-key)."`
	TLSKey               string        `name:"tls-key" placeholder:"FILE" help:"Private key of --tls-cert (PEM)."`
	PerAppMetrics        bool          `help:"Count stored webhooks per organization, application and kind (hookgate_app_webhooks_total)."`
	PerAppMetricsMax     int           `default:"${default_per_app_metrics_max}" help:"Most per-application series; past it webhooks are counted in hookgate_app_series_dropped_total."`
	CredentialMetrics    bool          `default:"true" negatable:"" help:"Export hookgate_credential_last_seen_timestamp_seconds per credential."`
	CredentialMetricsMax int           `default:"${default_credential_metrics_max}" help:"Most last-seen series; past it they are counted in hookgate_credential_series_dropped_total."`
	LogFormat            string        `default:"text" enum:"text,json" help:"Log format: text or json."`
	LogLevel             string        `default:"info" enum:"debug,info,warn,error" help:"Log level: debug logs every refused request."`
	natsAuth
}

func (c *serveCmd) Run(e *env) error {
	log := newLogger(e.stderr, c.LogFormat, c.LogLevel)
	if e.getenv("GOGC") == "" {
		// Short-lived garbage per request is steady and the gateway's own
		// heap is small: collecting at 4x growth instead of 2x halves GC's
		// share of CPU under load. GOGC set by the operator wins.
		debug.SetGCPercent(400)
	}
	var memLimit []any // logged once started: a failed start prints one line
	if e.getenv("GOMEMLIMIT") == "" {
		// 4x growth of a large heap (the embedded broker's duplicate window)
		// must not outgrow the container: see cgroupMemoryMax.
		if containerMax, ok := cgroupMemoryMax(os.ReadFile); ok {
			limit := memoryLimitFor(containerMax)
			debug.SetMemoryLimit(limit)
			memLimit = []any{"container_bytes", containerMax, "limit_bytes", limit}
		}
	}
	cfg, err := c.config(e, log)
	if err != nil {
		return err
	}
	g, err := gateway.Start(e.ctx, cfg)
	var bad *gateway.ConfigError
	if errors.As(err, &bad) {
		return usageError{fmt.Errorf("serve: %w", err)}
	}
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if memLimit != nil {
		log.Info("Go memory limit set from the container's", memLimit...)
	}
	if e.hup != nil {
		go func() {
			for range e.hup {
				g.ReloadSecretKeys()
			}
		}()
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// config maps serve's flags to the gateway's Config.
func (c *serveCmd) config(e *env, log *slog.Logger) (gateway.Config, error) {
	proxies, err := ingest.ParseProxies(c.TrustedProxies)
	if err != nil {
		return gateway.Config{}, usageError{err}
	}
	return gateway.Config{
		Listen:          c.Listen,
		MetricsListen:   c.MetricsListen,
		NATS:            c.conn(c.NatsURL, "hookgate"),
		DataDir:         c.DataDir,
		EmbeddedListen:  c.EmbeddedNatsListen,
		Stream:          c.Stream,
		TokensBucket:    c.TokensBucket,
		Replicas:        c.Replicas,
		DedupWindow:     c.DedupWindow,
		StreamMaxAge:    c.StreamMaxAge,
		StreamMaxBytes:  c.StreamMaxBytes,
		PublishTimeout:  c.PublishTimeout,
		ShutdownTimeout: c.ShutdownTimeout,
		ShutdownDelay:   c.ShutdownDelay,
		Hurry:           e.hurry,
		Ingest: ingest.Config{
			SubjectPrefix:    c.SubjectPrefix,
			MaxBody:          c.MaxBody,
			RateLimit:        c.RateLimit,
			RateBurst:        c.RateBurst,
			AuthFailureRate:  c.AuthFailureRate,
			AuthFailureBurst: c.AuthFailureBurst,
			MaxInFlight:      c.MaxInFlight,
			TrustedProxies:   proxies,
		},
		Server: ingest.ServerConfig{
			ReadTimeout:   c.ReadTimeout,
			WriteTimeout:  c.WriteTimeout,
			IdleTimeout:   c.IdleTimeout,
			MaxHeaderSize: c.MaxHeaderSize,
			MaxConnsPerIP: c.MaxConnsPerIP,
			MaxConns:      c.MaxConns,
		},
		Metrics: metrics.Options{
			PerApp: c.PerAppMetrics, PerAppMax: c.PerAppMetricsMax,
			CredentialSeen: c.CredentialMetrics, CredentialMax: c.CredentialMetricsMax,
		},
		SecretKeys: c.SecretKeys,
		TLSCert:    c.TLSCert,
		TLSKey:     c.TLSKey,
		Version:    version,
		Logger:     log,
	}, nil
}

func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(strings.ToUpper(level)))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
