package bus

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// ConnConfig is where and how to reach NATS: the URL and the usual auth.
type ConnConfig struct {
	URL      string
	Name     string // client name the server shows
	Creds    string // credentials file (JWT and seed)
	User     string
	Password string
	Token    string
	NKey     string // nkey seed file
	TLSCA    string
	TLSCert  string
	TLSKey   string
}

// Validate reports auth settings that cannot work together.
func (c ConnConfig) Validate() error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("bus: --nats-tls-cert and --nats-tls-key go together")
	}
	if c.Password != "" && c.User == "" {
		return fmt.Errorf("bus: --nats-password needs --nats-user")
	}
	return nil
}

// Options returns the nats.go options for c, without connection behaviour.
func (c ConnConfig) Options() ([]nats.Option, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	opts := []nats.Option{nats.Name(c.Name)}
	if c.Creds != "" {
		opts = append(opts, nats.UserCredentials(c.Creds))
	}
	if c.User != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.Token != "" {
		opts = append(opts, nats.Token(c.Token))
	}
	if c.NKey != "" {
		o, err := nats.NkeyOptionFromSeed(c.NKey)
		if err != nil {
			return nil, fmt.Errorf("bus: nkey seed %q: %w", c.NKey, err)
		}
		opts = append(opts, o)
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	if c.TLSCert != "" {
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	return opts, nil
}

// Dial connects once and fails at once if NATS is not there: for the CLI.
func Dial(c ConnConfig) (*nats.Conn, error) {
	opts, err := c.Options()
	if err != nil {
		return nil, err
	}
	opts = append(opts, nats.Timeout(5*time.Second))
	nc, err := nats.Connect(c.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("bus: connect to %s: %w", c.URL, err)
	}
	return nc, nil
}

// ConnEvents is told when a long-lived connection changes state.
type ConnEvents struct {
	Disconnected func(err error)
	Reconnected  func(url string)
	Closed       func()
	Error        func(err error)
}

// Connect opens the gateway's connection: it keeps trying for as long as the
// process runs, starting while NATS is still down. Publishes are never
// buffered while disconnected (ReconnectBufSize -1): a request answered 503
// must not be sent later behind the sender's back.
func Connect(c ConnConfig, ev ConnEvents, extra ...nats.Option) (*nats.Conn, error) {
	opts, err := c.Options()
	if err != nil {
		return nil, err
	}
	opts = append(opts, extra...)
	opts = append(opts,
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.ReconnectBufSize(-1),
		nats.PingInterval(5*time.Second),
		nats.Timeout(2*time.Second),
	)
	if ev.Disconnected != nil {
		opts = append(opts, nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { ev.Disconnected(err) }))
	}
	if ev.Reconnected != nil {
		opts = append(opts, nats.ReconnectHandler(func(nc *nats.Conn) { ev.Reconnected(nc.ConnectedUrlRedacted()) }))
		opts = append(opts, nats.ConnectHandler(func(nc *nats.Conn) { ev.Reconnected(nc.ConnectedUrlRedacted()) }))
	}
	if ev.Closed != nil {
		opts = append(opts, nats.ClosedHandler(func(*nats.Conn) { ev.Closed() }))
	}
	if ev.Error != nil {
		opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { ev.Error(err) }))
	}
	nc, err := nats.Connect(c.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("bus: connect to %s: %w", c.URL, err)
	}
	return nc, nil
}
