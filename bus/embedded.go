package bus

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedConfig configures the NATS server that serve starts when no
// --nats-url is given.
type EmbeddedConfig struct {
	Listen     string // host:port; port 0 picks a free port
	DataDir    string // JetStream storage
	MaxPayload int32  // 0: the server's default (1 MiB)
}

// StartEmbedded starts a NATS server with JetStream and waits until it takes
// connections. The caller shuts it down, last.
func StartEmbedded(cfg EmbeddedConfig) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("bus: embedded listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("bus: embedded listen address %q: bad port", cfg.Listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT // nats-server reads 0 as 4222
	}
	if host == "" {
		host = "0.0.0.0"
	}
	opts := &server.Options{
		ServerName: "hookgate-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.DataDir,
		MaxPayload: cfg.MaxPayload,
		NoSigs:     true, // serve owns the signals
		NoLog:      true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("bus: embedded server: %w", err)
	}
	// The server logs nothing (NoLog), except what stops it from starting:
	// a port in use or a data dir it cannot use. Without that, a failed
	// start would only show as a 30 s wait for readiness.
	fatal := &startFailure{err: make(chan string, 1)}
	s.SetLoggerV2(fatal, false, false, false)
	go s.Start()
	// Short waits, so that a fatal start is seen at once and nothing keeps
	// polling a server that will never be ready.
	for deadline := time.Now().Add(30 * time.Second); ; {
		select {
		case msg := <-fatal.err:
			s.Shutdown()
			return nil, fmt.Errorf("bus: embedded server on %s (data dir %q): %s", cfg.Listen, cfg.DataDir, msg)
		default:
		}
		if s.ReadyForConnections(50 * time.Millisecond) {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Shutdown()
			return nil, fmt.Errorf("bus: embedded server on %s did not start within 30s (data dir %q)", cfg.Listen, cfg.DataDir)
		}
	}
}

// startFailure is the embedded server's logger: it keeps the first fatal
// message, which nats-server logs instead of returning an error from Start,
// and drops everything else.
type startFailure struct{ err chan string }

func (f *startFailure) Fatalf(format string, v ...any) {
	select {
	case f.err <- fmt.Sprintf(format, v...):
	default:
	}
}
func (*startFailure) Noticef(string, ...any) {}
func (*startFailure) Warnf(string, ...any)   {}
func (*startFailure) Errorf(string, ...any)  {}
func (*startFailure) Debugf(string, ...any)  {}
func (*startFailure) Tracef(string, ...any)  {}
