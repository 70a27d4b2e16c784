package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/bus"
	hggateway "github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/internal/hgtest"
)

// The NATS users of the shipped configs, tried for real: a 3-node cluster in
// this process with a shipped config's accounts, users and TLS (ports, store
// and routes moved to loopback), a gateway logged in as its user, the
// platform's user issuing and revoking, the reader's tailing, and each user
// refused what it must not do.

// natsUser is a user every shipped config must have, and the environment
// variable its password comes from.
type natsUser struct {
	name, account, passwordVar string
}

var natsUsers = []natsUser{
	{"gateway", "HOOKGATE", "NATS_GATEWAY_PASSWORD"},
	{"platform", "HOOKGATE", "NATS_PLATFORM_PASSWORD"},
	{"reader", "HOOKGATE", "NATS_READER_PASSWORD"},
	{"admin", "HOOKGATE", "NATS_ADMIN_PASSWORD"},
	{"system", "SYS", "NATS_SYSTEM_PASSWORD"},
}

// testPassword is the password a test gives user: letters and digits, as the
// docs tell operators to generate them, starting with digits to show that
// nats-server's reading of the variable keeps it a string.
func testPassword(user string) string { return "0123" + user + "Xy9" }

func natsUserByName(name string) natsUser {
	for _, u := range natsUsers {
		if u.name == name {
			return u
		}
	}
	panic("no NATS user " + name)
}

// envRef is a config line whose value is an environment variable.
var envRef = regexp.MustCompile(`(?m)^\s*[a-z_]+\s*[:=]\s*\$([A-Z][A-Z0-9_]*)\s*$`)

// configEnvVars returns the environment variables a nats-server config reads.
func configEnvVars(conf []byte) []string {
	var vars []string
	for _, m := range envRef.FindAllSubmatch(conf, -1) {
		if v := string(m[1]); !slices.Contains(vars, v) {
			vars = append(vars, v)
		}
	}
	slices.Sort(vars)
	return vars
}

// shippedNATSConfig is one shipped nats-server config, ready for a test.
type shippedNATSConfig struct {
	name       string // compose, kubernetes
	file       string // the config, its TLS files moved to certDir
	nameVar    string // the variable of its server_name
	certDir    string // "" when the config has no TLS
	tlsMounted string // where the config reads its TLS files in the container
}

// shippedNATSConfigs returns the compose nodes' config, with TLS files made by
// the command the compose service nats-certs runs, and the ConfigMap's.
func shippedNATSConfigs(t *testing.T) []shippedNATSConfig {
	t.Helper()
	compose := composeNATSTLS(t)
	conf := string(readFile(t, "deploy/nats/nats-cluster.conf"))
	if !strings.Contains(conf, compose.mount+"/") {
		t.Fatalf("deploy/nats/nats-cluster.conf reads no TLS file under %s, where the compose file mounts the certificates", compose.mount)
	}
	certDir := t.TempDir()
	gencert(t, certDir, compose.hosts)
	composeFile := filepath.Join(t.TempDir(), "nats-cluster.conf")
	writeTestFile(t, composeFile, strings.ReplaceAll(conf, compose.mount+"/", certDir+"/"))

	k8sFile := filepath.Join(t.TempDir(), "nats.conf")
	writeTestFile(t, k8sFile, kubernetesNATSConf(t))
	return []shippedNATSConfig{
		{name: "compose", file: composeFile, nameVar: "NATS_SERVER_NAME", certDir: certDir, tlsMounted: compose.mount},
		{name: "kubernetes", file: k8sFile, nameVar: "SERVER_NAME"},
	}
}

func writeTestFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// kubernetesNATSConf is the nats.conf of the ConfigMap nats-config.
func kubernetesNATSConf(t *testing.T) string {
	t.Helper()
	conf := str(find(t, loadKubernetes(t), "v1", "ConfigMap", "nats-config"), "data", "nats.conf")
	if conf == "" {
		t.Fatal("ConfigMap nats-config has no nats.conf")
	}
	return conf
}

// gencert runs deploy/nats/gencert as the compose service nats-certs does.
func gencert(t *testing.T, dir string, hosts string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "go", "run", "./nats/gencert", "-dir", dir, "-hosts", hosts)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gencert: %v\n%s", err, out)
	}
}

// setNATSEnv sets what a shipped config reads from the environment: the
// server name and every user's password.
func setNATSEnv(t *testing.T, nameVar, serverName string) {
	t.Helper()
	t.Setenv(nameVar, serverName)
	for _, u := range natsUsers {
		t.Setenv(u.passwordVar, testPassword(u.name))
	}
}

// TestNATSConfigUsers: each shipped config (parsed by nats-server, as `-t`
// does) refuses anonymous clients and has exactly the users hookgate ships,
// each in its account, each password read from its own environment variable
// and none written in the file; the server refuses to start when one is
// missing. Both configs give every user the same permissions.
func TestNATSConfigUsers(t *testing.T) {
	perms := map[string]map[string]string{} // config -> user -> permissions
	for _, c := range shippedNATSConfigs(t) {
		conf := readTestFile(t, c.file)
		var wantVars []string
		for _, u := range natsUsers {
			wantVars = append(wantVars, u.passwordVar)
		}
		wantVars = append(wantVars, c.nameVar)
		slices.Sort(wantVars)
		if got := configEnvVars(conf); !slices.Equal(got, wantVars) {
			t.Errorf("%s: reads the variables %v, want %v", c.name, got, wantVars)
		}

		setNATSEnv(t, c.nameVar, "n1")
		opts, err := server.ProcessConfigFile(c.file)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if opts.NoAuthUser != "" || len(opts.Nkeys) > 0 || opts.Username != "" || opts.Authorization != "" {
			t.Errorf("%s: a client may log in without one of the users (no_auth_user %q, top-level user %q)", c.name, opts.NoAuthUser, opts.Username)
		}
		if opts.SystemAccount != "SYS" {
			t.Errorf("%s: system_account %q, want SYS", c.name, opts.SystemAccount)
		}
		perms[c.name] = map[string]string{}
		var got []string
		for _, u := range opts.Users {
			got = append(got, u.Username)
			want := natsUserByName(u.Username)
			if u.Account == nil || u.Account.Name != want.account {
				t.Errorf("%s: user %s is not in account %s", c.name, u.Username, want.account)
			}
			if u.Password != testPassword(u.Username) {
				t.Errorf("%s: user %s's password is not $%s", c.name, u.Username, want.passwordVar)
			}
			perms[c.name][u.Username] = fmt.Sprintf("%+v", permissionsString(u.Permissions))
		}
		slices.Sort(got)
		var want []string
		for _, u := range natsUsers {
			want = append(want, u.name)
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: users %v, want %v", c.name, got, want)
		}
		for _, u := range []string{"gateway", "platform", "reader"} {
			if perms[c.name][u] == "<nil>" {
				t.Errorf("%s: user %s has no permissions: it may do anything", c.name, u)
			}
		}

		t.Setenv("NATS_PLATFORM_PASSWORD", "")
		os.Unsetenv("NATS_PLATFORM_PASSWORD")
		if _, err := server.ProcessConfigFile(c.file); err == nil || !strings.Contains(err.Error(), "NATS_PLATFORM_PASSWORD") {
			t.Errorf("%s without $NATS_PLATFORM_PASSWORD: %v, want the server to refuse the config", c.name, err)
		}
	}
	for _, u := range natsUsers {
		if perms["compose"][u.name] != perms["kubernetes"][u.name] {
			t.Errorf("user %s: compose's permissions\n%s\ndiffer from the Kubernetes ConfigMap's\n%s", u.name, perms["compose"][u.name], perms["kubernetes"][u.name])
		}
	}
}

func readTestFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// permissionsString writes p in one canonical form.
func permissionsString(p *server.Permissions) string {
	if p == nil {
		return "<nil>"
	}
	sp := func(s *server.SubjectPermission) string {
		if s == nil {
			return "{}"
		}
		return fmt.Sprintf("{allow %v deny %v}", s.Allow, s.Deny)
	}
	return fmt.Sprintf("publish %s subscribe %s responses %+v", sp(p.Publish), sp(p.Subscribe), p.Response)
}

// natsCluster is three nodes of one shipped config on loopback.
type natsCluster struct {
	cfg  shippedNATSConfig
	urls string // every node's client URL, comma separated
}

// startShippedCluster starts three nodes with cfg's accounts, users and TLS;
// only the ports, routes, store and logs are the test's.
func startShippedCluster(t *testing.T, cfg shippedNATSConfig) natsCluster {
	t.Helper()
	names := []string{"n1", "n2", "n3"}
	routePorts := make([]int, len(names))
	for i := range routePorts {
		routePorts[i] = hgtest.Port(t)
	}
	scheme := "nats"
	if cfg.certDir != "" {
		scheme = "tls"
	}
	var urls []string
	for i, name := range names {
		setNATSEnv(t, cfg.nameVar, name)
		opts, err := server.ProcessConfigFile(cfg.file)
		if err != nil {
			t.Fatalf("%s: %v", cfg.name, err)
		}
		if opts.ServerName != name {
			t.Fatalf("%s: server_name %q, want %q from $%s", cfg.name, opts.ServerName, name, cfg.nameVar)
		}
		if (cfg.certDir != "") != (opts.TLSConfig != nil) {
			t.Fatalf("%s: client TLS %v, want %v", cfg.name, opts.TLSConfig != nil, cfg.certDir != "")
		}
		var routes []string
		for j, p := range routePorts {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
			}
		}
		opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", hgtest.Port(t), 0
		opts.StoreDir, opts.PidFile = t.TempDir(), ""
		opts.Cluster.Host, opts.Cluster.Port, opts.Cluster.NoAdvertise = "127.0.0.1", routePorts[i], true
		opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		opts.NoLog, opts.NoSigs = true, true
		hgtest.RunNATSWith(t, opts)
		urls = append(urls, fmt.Sprintf("%s://127.0.0.1:%d", scheme, opts.Port))
	}
	c := natsCluster{cfg: cfg, urls: strings.Join(urls, ",")}
	// JetStream can place three replicas once every node is up and a meta
	// leader is elected.
	_, js := c.connect(t, "admin", nil)
	hgtest.WaitFor(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "READY", Subjects: []string{"ready.>"}, Replicas: 3, Storage: jetstream.MemoryStorage})
		return err
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, "READY"); err != nil {
		t.Fatalf("delete READY: %v", err)
	}
	return c
}

// options are the client options of user (no user: anonymous).
func (c natsCluster) options(user string) []nats.Option {
	opts := []nats.Option{nats.Timeout(5 * time.Second), nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond)}
	if user != "" {
		opts = append(opts, nats.UserInfo(user, testPassword(user)))
	}
	if c.cfg.certDir != "" {
		opts = append(opts, nats.RootCAs(filepath.Join(c.cfg.certDir, "ca.pem")))
	}
	return opts
}

// connect logs in as user; the server's asynchronous errors (permissions
// violations) go to errs when it is not nil.
func (c natsCluster) connect(t *testing.T, user string, errs *asyncErrors) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	opts := c.options(user)
	if errs != nil {
		opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs.add(err) }))
	}
	return hgtest.Connect(t, c.urls, opts...)
}

// soon is a context for one call that must not hang the test: a request the
// server refuses gets no reply at all.
func soon(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// asyncErrors collects what the server told a connection.
type asyncErrors struct {
	mu   sync.Mutex
	errs []string
}

func (e *asyncErrors) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.errs = append(e.errs, err.Error())
}

// String is every error so far, one a line.
func (e *asyncErrors) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.errs, "\n")
}

// has reports whether an error so far contains s, in any case.
func (e *asyncErrors) has(s string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.ContainsFunc(e.errs, func(x string) bool { return strings.Contains(strings.ToLower(x), strings.ToLower(s)) })
}

// TestNATSPermissions: on each shipped config, a gateway logged in as gateway
// becomes ready (it finds or creates the stream and the bucket and watches
// the bucket), the platform's user issues a token, the gateway stores a
// webhook sent with it, the reader reads that webhook from the stream as
// `hookgate tail` does, and a revoke by the platform's user reaches the
// gateway; no user's own work trips a permissions violation. Then each user
// is refused what is not its job: the gateway writing the bucket above all.
func TestNATSPermissions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two 3-node NATS clusters")
	}
	for _, cfg := range shippedNATSConfigs(t) {
		t.Run(cfg.name, func(t *testing.T) {
			c := startShippedCluster(t, cfg)
			refusesStrangers(t, c)

			gw := hgtest.StartGateway(t, c.urls, func(gc *hggateway.Config) {
				gc.Replicas = 3
				gc.Ingest.AuthFailureRate = 0 // every request comes from 127.0.0.1
				gc.NATS.User, gc.NATS.Password = "gateway", testPassword("gateway")
				if cfg.certDir != "" {
					gc.NATS.TLSCA = filepath.Join(cfg.certDir, "ca.pem")
				}
			})

			platformErrs := &asyncErrors{}
			_, pjs := c.connect(t, "platform", platformErrs)
			kv, err := bus.EnsureBucket(soon(t), pjs, hggateway.DefaultTokensBucket, 3)
			if err != nil {
				t.Fatalf("platform: bucket: %v", err)
			}
			reg := &auth.Registry{KV: kv}
			is, err := reg.Issue(soon(t), auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "monitoring"})
			if err != nil {
				t.Fatalf("platform: issue: %v", err)
			}
			// A replica may answer the list's read before it has the issue's
			// write (the bucket allows direct reads from any replica): the
			// list converges, as `token list` does on a cluster.
			hgtest.WaitFor(t, 10*time.Second, func() error {
				if list, err := reg.List(soon(t), "acme"); err != nil || len(list) != 1 {
					return fmt.Errorf("platform: list: %d credentials, %v; want the one issued", len(list), err)
				}
				return nil
			})

			readerErrs := &asyncErrors{}
			_, rjs := c.connect(t, "reader", readerErrs)
			got := tailOne(t, rjs)

			body := []byte(`{"check":"homepage","status":"down"}`)
			if code, out, _ := hgtest.Post(t, gw.URL+"/v1/hits/web", is.Token, body, nil); code != 202 {
				t.Fatalf("webhook as the gateway user: %d %s, want 202", code, out)
			}
			select {
			case m := <-got:
				if m.Subject() != "hooks.acme.web.hits" || string(m.Data()) != string(body) {
					t.Errorf("reader got %s %s, want hooks.acme.web.hits %s", m.Subject(), m.Data(), body)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the reader got no webhook from the stream")
			}

			// A token the gateway has not seen is read from the bucket
			// (direct get): unknown there, 401, not a 503 for a refused read.
			if code, out, _ := hgtest.Post(t, gw.URL+"/v1/hits/web", "unknown-token-0123456789abcdef", body, nil); code != 401 {
				t.Errorf("unknown token: %d %s, want 401 after a bucket read", code, out)
			}
			// The watch's check of the bucket stream's leader, which runs
			// only when the watch looks behind: asked here with the
			// gateway's user.
			gnc, _ := c.connect(t, "gateway", nil)
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			if _, err := bus.KVNextRevision(gnc, hggateway.DefaultTokensBucket)(ctx, 1); err != nil {
				t.Errorf("gateway: next revision of the bucket: %v", err)
			}
			cancel()

			if err := reg.Revoke(soon(t), is.ID); err != nil {
				t.Fatalf("platform: revoke: %v", err)
			}
			hgtest.WaitFor(t, 5*time.Second, func() error {
				if code, _, _ := hgtest.Post(t, gw.URL+"/v1/hits/web", is.Token, body, nil); code != 401 {
					return fmt.Errorf("revoked token: %d, want 401", code)
				}
				return nil
			})

			for who, errs := range map[string]string{"gateway": gw.Logs.String(), "platform": platformErrs.String(), "reader": readerErrs.String()} {
				if strings.Contains(strings.ToLower(errs), "permissions violation") {
					t.Errorf("%s tripped a permissions violation doing its own work:\n%s", who, errs)
				}
			}

			refusesOthersWork(t, c)
		})
	}
}

// refusesStrangers: no client gets in without a user, or with a wrong
// password.
func refusesStrangers(t *testing.T, c natsCluster) {
	t.Helper()
	for _, opts := range [][]nats.Option{
		c.options(""),
		append(c.options(""), nats.UserInfo("gateway", "not-its-password")),
	} {
		opts = append(opts, nats.MaxReconnects(0), nats.RetryOnFailedConnect(false))
		nc, err := nats.Connect(c.urls, opts...)
		if err == nil {
			nc.Close()
			t.Error("connected without a valid user and password")
		} else if !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
			t.Errorf("connect without a valid user: %v, want an authorization violation", err)
		}
	}
}

// tailOne consumes the stream as `hookgate tail` does (an ordered consumer
// of new messages) and hands over the first message.
func tailOne(t *testing.T, js jetstream.JetStream) <-chan jetstream.Msg {
	t.Helper()
	stream, err := js.Stream(soon(t), hggateway.DefaultStream)
	if err != nil {
		t.Fatalf("reader: stream: %v", err)
	}
	cons, err := stream.OrderedConsumer(soon(t), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"hooks.acme.*.*"},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		t.Fatalf("reader: consumer: %v", err)
	}
	got := make(chan jetstream.Msg, 1)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case got <- m:
		default:
		}
	})
	if err != nil {
		t.Fatalf("reader: consume: %v", err)
	}
	t.Cleanup(cc.Stop)
	return got
}

// refusal is something a user must not be able to do, and the subject the
// server must name in refusing it.
type refusal struct {
	user, what, subject string
	do                  func(ctx context.Context, nc *nats.Conn, js jetstream.JetStream) error
}

// refusesOthersWork tries each refusal and checks that the server refused
// it with a permissions violation on its subject, and that the bucket and
// the stream are as they were.
func refusesOthersWork(t *testing.T, c natsCluster) {
	t.Helper()
	_, ajs := c.connect(t, "admin", nil)
	stored := func() uint64 {
		s, err := ajs.Stream(soon(t), hggateway.DefaultStream)
		if err != nil {
			t.Fatalf("admin: stream: %v", err)
		}
		info, err := s.Info(soon(t))
		if err != nil {
			t.Fatalf("admin: stream: %v", err)
		}
		return info.State.Msgs
	}
	before := stored()
	const forged = "tok.0000000000000000000000000000000000000000000000000000000000000000"
	record := []byte(`{"id":"forged","org":"acme","app":"","kind":"hits","name":"forged","version":1}`)
	kvPut := func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) error {
		kv, err := js.KeyValue(ctx, hggateway.DefaultTokensBucket)
		if err != nil {
			return err
		}
		_, err = kv.Put(ctx, forged, record)
		return err
	}
	// What kv.Put sends, for a user who may not even look the bucket up.
	rawKVPut := func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) error {
		_, err := js.Publish(ctx, "$KV."+hggateway.DefaultTokensBucket+"."+forged, record)
		return err
	}
	publish := func(subject string) func(context.Context, *nats.Conn, jetstream.JetStream) error {
		return func(_ context.Context, nc *nats.Conn, _ jetstream.JetStream) error {
			if err := nc.Publish(subject, []byte(`{}`)); err != nil {
				return err
			}
			return nc.Flush()
		}
	}
	deleteStream := func(name string) func(context.Context, *nats.Conn, jetstream.JetStream) error {
		return func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) error {
			return js.DeleteStream(ctx, name)
		}
	}
	purgeStream := func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) error {
		s, err := js.Stream(ctx, hggateway.DefaultStream)
		if err != nil {
			return err
		}
		return s.Purge(ctx)
	}
	streamInfo := func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) error {
		_, err := js.Stream(ctx, hggateway.DefaultStream)
		return err
	}
	for _, r := range []refusal{
		{"gateway", "write the bucket (mint a credential)", "$KV.hookgate-tokens." + forged, kvPut},
		{"gateway", "delete the stream", "$JS.API.STREAM.DELETE.HOOKS", deleteStream(hggateway.DefaultStream)},
		{"gateway", "purge the stream", "$JS.API.STREAM.PURGE.HOOKS", purgeStream},
		{"gateway", "delete the bucket", "$JS.API.STREAM.DELETE.KV_hookgate-tokens", deleteStream("KV_hookgate-tokens")},
		{"gateway", "forge a reply into a client's inbox", "_INBOX.forged", publish("_INBOX.forged")},
		{"platform", "publish a webhook past the gateway", "hooks.acme.web.hits", publish("hooks.acme.web.hits")},
		{"platform", "read the stream", "$JS.API.STREAM.INFO.HOOKS", streamInfo},
		{"platform", "delete the bucket", "$JS.API.STREAM.DELETE.KV_hookgate-tokens", deleteStream("KV_hookgate-tokens")},
		{"reader", "publish a webhook", "hooks.acme.web.hits", publish("hooks.acme.web.hits")},
		{"reader", "write the bucket", "$KV.hookgate-tokens." + forged, rawKVPut},
		{"reader", "purge the stream", "$JS.API.STREAM.PURGE.HOOKS", purgeStream},
		{"reader", "forge a reply into a client's inbox", "_INBOX.forged", publish("_INBOX.forged")},
	} {
		t.Run(r.user+" may not "+r.what, func(t *testing.T) {
			errs := &asyncErrors{}
			nc, js := c.connect(t, r.user, errs)
			// A refused request gets no reply: the call waits out its
			// context, so it is cut short once the server has said no.
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- r.do(ctx, nc, js) }()
			want := fmt.Sprintf("permissions violation for publish to %q", r.subject)
			hgtest.WaitFor(t, 5*time.Second, func() error {
				if errs.has(want) {
					return nil
				}
				return fmt.Errorf("no %s (the server said %q)", want, errs.String())
			})
			cancel()
			<-done
		})
	}

	// Nothing of it took effect.
	kv, err := ajs.KeyValue(soon(t), hggateway.DefaultTokensBucket)
	if err != nil {
		t.Fatalf("admin: bucket: %v", err)
	}
	if _, err := kv.Get(soon(t), forged); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("the forged credential: %v, want not found", err)
	}
	if after := stored(); after != before || before == 0 {
		t.Errorf("the stream held %d messages before the refusals, %d after: want the gateway's, and nothing else", before, after)
	}
}
