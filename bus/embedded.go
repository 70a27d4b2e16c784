package bus

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/hookgate/hookgate/internal/logsample"
)

// EmbeddedConfig configures the NATS server that serve starts when no
// --nats-url is given.
type EmbeddedConfig struct {
	Listen     string // host:port; port 0 picks a free port
	DataDir    string // JetStream storage
	MaxPayload int32  // 0: the server's default (1 MiB)
	// Logger gets the server's warnings and errors (a full disk, JetStream
	// disabling itself, a client it had to cut off), each line passed
	// through Redact first when set. Nil: they are dropped.
	Logger *slog.Logger
	Redact func(string) string
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
	// NoLog keeps the server's own logger (stderr, its own format) off; this
	// one keeps the first fatal message, which nats-server logs instead of
	// returning an error from Start (a port in use, a data dir it cannot
	// use), and passes warnings and errors on to cfg.Logger.
	fatal := newServerLog(cfg.Logger, cfg.Redact)
	s.SetLoggerV2(fatal, false, false, false)
	go s.Start()
	// Short waits, so that a fatal start is seen at once and nothing keeps
	// polling a server that will never be ready.
	for deadline := time.Now().Add(30 * time.Second); ; {
		select {
		case msg := <-fatal.fatal:
			s.Shutdown()
			return nil, fmt.Errorf("bus: embedded server on %s (data dir %q): %s", cfg.Listen, cfg.DataDir, msg)
		default:
		}
		if s.ReadyForConnections(50 * time.Millisecond) {
			fatal.started.Store(true)
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Shutdown()
			return nil, fmt.Errorf("bus: embedded server on %s did not start within 30s (data dir %q)", cfg.Listen, cfg.DataDir)
		}
	}
}

// serverLog is the embedded server's logger.
//
// Any client that reaches the server's port can make it log (a protocol it
// cannot parse is an error line), so lines are sampled, and the next line
// written says how many were left out. Lines about one connection and
// server-wide lines (a full disk, JetStream disabling itself) are sampled
// apart, so that a flood of the first cannot hide the second.
type serverLog struct {
	started atomic.Bool // StartEmbedded has returned the server
	fatal   chan string
	log     *slog.Logger
	redact  func(string) string
	conn    *logsample.Sampler
	server  *logsample.Sampler
}

func newServerLog(log *slog.Logger, redact func(string) string) *serverLog {
	return &serverLog{fatal: make(chan string, 1), log: log, redact: redact,
		conn: logsample.New(1, 20), server: logsample.New(1, 20)}
}

// connPrefix is how nats-server begins a line about one connection:
// "127.0.0.1:51178 - cid:14 - " (also rid, gid, lid, mid, wid).
var connPrefix = regexp.MustCompile(`^\S+ - [a-z]+\S*:\d+ - `)

// protoQuote is the raw bytes a parser error quotes from what a client sent:
// whatever the client wrote, so not for the log.
var protoQuote = regexp.MustCompile(`proto='.*'`)

func (l *serverLog) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if !l.started.Load() {
		select {
		case l.fatal <- msg: // StartEmbedded returns it
			return
		default:
		}
	}
	l.write(slog.LevelError, msg, nil) // never sampled
}
func (l *serverLog) Errorf(format string, v ...any) { l.pass(slog.LevelError, format, v) }
func (l *serverLog) Warnf(format string, v ...any)  { l.pass(slog.LevelWarn, format, v) }
func (*serverLog) Noticef(string, ...any)           {}
func (*serverLog) Debugf(string, ...any)            {}
func (*serverLog) Tracef(string, ...any)            {}

func (l *serverLog) pass(level slog.Level, format string, v []any) {
	if l.log == nil {
		return
	}
	sm := l.server
	if connPrefix.MatchString(format) {
		sm = l.conn
	}
	ok, leftOut := sm.Allow()
	if !ok {
		return
	}
	var attrs []any
	if leftOut > 0 {
		attrs = append(attrs, "server_lines_not_logged_since_last", leftOut)
	}
	l.write(level, fmt.Sprintf(format, v...), attrs)
}

func (l *serverLog) write(level slog.Level, msg string, attrs []any) {
	if l.log == nil {
		return
	}
	msg = protoQuote.ReplaceAllString(msg, "proto=(not logged)")
	if l.redact != nil {
		msg = l.redact(msg)
	}
	l.log.Log(context.Background(), level, "embedded NATS server: "+msg, attrs...)
}
