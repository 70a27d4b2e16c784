package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/bus"
	"github.com/hookgate/hookgate/ingest"
	"github.com/hookgate/hookgate/metrics"
)

// The gateway's defaults, the contract's. The command line's flag defaults
// are these constants, and those of ingest and metrics.
const (
	DefaultListen          = ":8080"
	DefaultMetricsListen   = ":9180"
	DefaultDataDir         = "./data"
	DefaultEmbeddedListen  = "127.0.0.1:4222"
	DefaultStream          = "HOOKS"
	DefaultTokensBucket    = "hookgate-tokens"
	DefaultReplicas        = 1
	DefaultDedupWindow     = 2 * time.Minute
	DefaultPublishTimeout  = 5 * time.Second
	DefaultShutdownTimeout = 30 * time.Second
	DefaultShutdownDelay   = 0 // none: a load balancer in front should have its own grace
	// The stream's limits when Start creates it: a week of webhooks, and no
	// size limit (the store's own size bounds it; alerts warn at 80% of a
	// limit that is set).
	DefaultStreamMaxAge   = 168 * time.Hour
	DefaultStreamMaxBytes = -1
)

// Config is everything serve needs. As on the command line, a zero setting
// means none, and Validate refuses those a gateway cannot do without: start
// from DefaultConfig.
type Config struct {
	Listen        string       // webhook listener address
	MetricsListen string       // metrics listener address
	Listener      net.Listener // if set, used instead of Listen (tests)
	MetricsLn     net.Listener // if set, used instead of MetricsListen

	NATS           bus.ConnConfig // URL empty: embedded server
	DataDir        string         // the embedded server's JetStream storage
	EmbeddedListen string         // the embedded server's client address

	Stream         string
	TokensBucket   string
	Replicas       int           // of the stream and bucket, when Start creates them
	DedupWindow    time.Duration // of the stream, when Start creates it
	StreamMaxAge   time.Duration // of the stream, when Start creates it; 0: none
	StreamMaxBytes int64         // of the stream, when Start creates it; 0 or -1: none
	PublishTimeout time.Duration

	Ingest          ingest.Config // its SubjectPrefix is the stream's too
	Server          ingest.ServerConfig
	ShutdownTimeout time.Duration
	// ShutdownDelay is how long, once shutdown begins, the gateway goes on
	// accepting and serving while /readyz says 503 (0: no delay), so that
	// a load balancer stops routing to it before its listener closes.
	// Hurry, when it closes, ends the delay early (a second signal).
	ShutdownDelay time.Duration
	Hurry         <-chan struct{}
	Cache         auth.StoreConfig
	Metrics       metrics.Options

	// SecretKeys is the key ring file that unseals signing secrets; "":
	// secret-keys in DataDir.
	SecretKeys string

	TLSCert string // webhook listener certificate (PEM); with TLSKey
	TLSKey  string

	Version string       // "" : "dev"
	Logger  *slog.Logger // nil: no logs
}

// DefaultConfig is the contract's gateway: embedded NATS, every limit at its
// default.
func DefaultConfig() Config {
	return Config{
		Listen:          DefaultListen,
		MetricsListen:   DefaultMetricsListen,
		DataDir:         DefaultDataDir,
		EmbeddedListen:  DefaultEmbeddedListen,
		Stream:          DefaultStream,
		TokensBucket:    DefaultTokensBucket,
		Replicas:        DefaultReplicas,
		DedupWindow:     DefaultDedupWindow,
		StreamMaxAge:    DefaultStreamMaxAge,
		StreamMaxBytes:  DefaultStreamMaxBytes,
		PublishTimeout:  DefaultPublishTimeout,
		Ingest:          ingest.DefaultConfig(),
		Server:          ingest.DefaultServerConfig(),
		ShutdownTimeout: DefaultShutdownTimeout,
		Metrics:         metrics.DefaultOptions(),
	}
}

// fillOptional gives the settings that are not limits their natural value.
func (c *Config) fillOptional() {
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.NATS.Name == "" {
		c.NATS.Name = "hookgate"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports settings that are missing or cannot work, named by the
// flags that set them.
func (c *Config) Validate() error {
	var errs []error
	if !validSubjectToken(c.Ingest.SubjectPrefix, true) {
		errs = append(errs, fmt.Errorf("--subject-prefix %q: want NATS subject tokens without wildcards or spaces", c.Ingest.SubjectPrefix))
	}
	if !validSubjectToken(c.Stream, false) {
		errs = append(errs, fmt.Errorf("--stream %q: want letters, digits, - or _", c.Stream))
	}
	if !validSubjectToken(c.TokensBucket, false) {
		errs = append(errs, fmt.Errorf("--tokens-bucket %q: want letters, digits, - or _", c.TokensBucket))
	}
	if c.Listen == "" && c.Listener == nil {
		errs = append(errs, errors.New("--listen: no webhook listener address"))
	}
	if c.MetricsListen == "" && c.MetricsLn == nil {
		errs = append(errs, errors.New("--metrics-listen: no metrics listener address"))
	}
	if c.NATS.URL == "" && (c.DataDir == "" || c.EmbeddedListen == "") {
		errs = append(errs, errors.New("the embedded NATS server needs --data-dir and --embedded-nats-listen"))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("--replicas %d: JetStream allows 1 to 5", c.Replicas))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--dedup-window", c.DedupWindow}, {"--publish-timeout", c.PublishTimeout}, {"--shutdown-timeout", c.ShutdownTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s %v: must be positive", d.name, d.v))
		}
	}
	if c.StreamMaxAge < 0 {
		errs = append(errs, fmt.Errorf("--stream-max-age %v: 0 means none; it cannot be negative", c.StreamMaxAge))
	}
	if c.StreamMaxBytes < -1 {
		errs = append(errs, fmt.Errorf("--stream-max-bytes %d: 0 or -1 mean none; other negatives are not sizes", c.StreamMaxBytes))
	}
	if c.ShutdownDelay < 0 {
		errs = append(errs, fmt.Errorf("--shutdown-delay %v: cannot be negative", c.ShutdownDelay))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	errs = append(errs, c.Ingest.Validate(), c.Server.Validate(), c.NATS.Validate())
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

// validSubjectToken reports whether s may name a stream or bucket (dots
// false) or be a subject prefix (dots true: tokens joined by single dots).
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
