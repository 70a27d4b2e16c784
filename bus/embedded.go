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
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("bus: embedded server on %s did not start (port in use, or data dir %q not writable?)", cfg.Listen, cfg.DataDir)
	}
	return s, nil
}
