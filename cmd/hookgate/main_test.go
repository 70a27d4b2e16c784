package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookgate/hookgate/internal/hgtest"
)

func noEnv(string) string { return "" }

// cli runs one command and returns its exit code, stdout and stderr.
func runCLI(t *testing.T, getenv func(string) string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, args, getenv, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// served is a `hookgate serve` running through run().
type served struct {
	listen, metrics, natsURL string
	stderr                   *hgtest.LogBuffer
	stop                     func() int
}

// serve runs `hookgate serve` on :0 ports, embedded NATS included, and takes
// the addresses it got from its log; it waits for /readyz.
func serve(t *testing.T, dataDir string, extra ...string) *served {
	t.Helper()
	s := &served{stderr: &hgtest.LogBuffer{}}
	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
		"--data-dir", dataDir, "--embedded-nats-listen", "127.0.0.1:0", "--log-level", "debug", "--log-format", "json"}, extra...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, noEnv, &bytes.Buffer{}, s.stderr) }()
	var once sync.Once
	code := -1
	s.stop = func() int {
		once.Do(func() { cancel(); code = <-done })
		return code
	}
	t.Cleanup(func() { s.stop() })
	hgtest.WaitFor(t, 20*time.Second, func() error {
		select {
		case c := <-done:
			done <- c
			return fmt.Errorf("serve exited %d: %s", c, s.stderr.String())
		default:
		}
		var ok bool
		if s.listen, s.metrics, s.natsURL, ok = started(s.stderr.String()); !ok {
			return errors.New("serve has not logged its addresses yet")
		}
		return hgtest.Ready("http://" + s.metrics)
	})
	return s
}

// started reads the addresses on serve's "hookgate started" log line (JSON
// logs); ok is false until that line is written.
func started(logs string) (listen, metricsListen, natsURL string, ok bool) {
	for line := range strings.Lines(logs) {
		var l struct {
			Msg           string `json:"msg"`
			Listen        string `json:"listen"`
			MetricsListen string `json:"metrics_listen"`
			NATSURL       string `json:"nats_url"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "hookgate started" {
			return l.Listen, l.MetricsListen, l.NATSURL, true
		}
	}
	return "", "", "", false
}

type issued struct {
	ID        string  `json:"id"`
	Org       string  `json:"org"`
	App       string  `json:"app"`
	Kind      string  `json:"kind"`
	Name      string  `json:"name"`
	Token     string  `json:"token"`
	Version   int     `json:"version"`
	CreatedAt string  `json:"created_at"`
	ExpiresAt *string `json:"expires_at"`
}

func decodeOne(t *testing.T, out string, v any) {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(out))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		t.Fatalf("stdout is not the contract's JSON object: %v\n%s", err, out)
	}
	if d.More() {
		t.Fatalf("stdout holds more than one JSON value:\n%s", out)
	}
}

func post(t *testing.T, s *served, path, token string) int {
	t.Helper()
	code, _, _ := hgtest.Post(t, "http://"+s.listen+path, token, []byte(`{"from":"cli test"}`), nil)
	return code
}

func refusedWithinSecond(t *testing.T, s *served, path, token string) {
	t.Helper()
	hgtest.WaitFor(t, time.Second, func() error {
		if c := post(t, s, path, token); c != 401 {
			return fmt.Errorf("old token still answers %d", c)
		}
		return nil
	})
}

func TestTokenLifecycleThroughCLI(t *testing.T) {
	s := serve(t, t.TempDir())
	nats := []string{"--nats-url", s.natsURL}

	code, out, errOut := runCLI(t, noEnv, append([]string{"token", "issue", "--org", "acme", "--kind", "deploy", "--app", "web", "--name", "ci", "--expires", "720h", "--json"}, nats...)...)
	if code != 0 {
		t.Fatalf("issue exit %d: %s", code, errOut)
	}
	var is issued
	decodeOne(t, out, &is)
	if !regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`).MatchString(is.ID) || is.Version != 1 || is.App != "web" || is.Kind != "deploy" ||
		!strings.HasPrefix(is.Token, "hgd_") || is.ExpiresAt == nil {
		t.Fatalf("issued %+v", is)
	}
	for _, ts := range []string{is.CreatedAt, *is.ExpiresAt} {
		if tm, err := time.Parse(time.RFC3339, ts); err != nil || tm.Location() != time.UTC || !strings.HasSuffix(ts, "Z") {
			t.Fatalf("time %q is not RFC 3339 UTC", ts)
		}
	}
	if c := post(t, s, "/v1/deploys/web", is.Token); c != 202 {
		t.Fatalf("issued token: %d", c)
	}

	// Flags after the positional argument.
	code, out, errOut = runCLI(t, noEnv, append([]string{"token", "rotate", is.ID, "--json"}, nats...)...)
	if code != 0 {
		t.Fatalf("rotate exit %d: %s", code, errOut)
	}
	var rot issued
	decodeOne(t, out, &rot)
	if rot.Version != 2 || rot.ID != is.ID || rot.Token == is.Token {
		t.Fatalf("rotated %+v", rot)
	}
	refusedWithinSecond(t, s, "/v1/deploys/web", is.Token)
	if c := post(t, s, "/v1/deploys/web", rot.Token); c != 202 {
		t.Fatalf("rotated token: %d", c)
	}

	code, out, errOut = runCLI(t, noEnv, append([]string{"token", "rename", is.ID, "--name", "ci prod", "--json"}, nats...)...)
	if code != 0 {
		t.Fatalf("rename exit %d: %s", code, errOut)
	}
	var ren issued
	decodeOne(t, out, &ren)
	if ren.Version != 3 || ren.Name != "ci prod" {
		t.Fatalf("renamed %+v", ren)
	}
	refusedWithinSecond(t, s, "/v1/deploys/web", rot.Token)
	if c := post(t, s, "/v1/deploys/web", ren.Token); c != 202 {
		t.Fatalf("renamed token: %d", c)
	}

	// An org-wide hits credential, then list: never tokens.
	code, out, _ = runCLI(t, noEnv, append([]string{"token", "issue", "--org", "acme", "--kind", "hits", "--name", "alertmanager", "--json"}, nats...)...)
	var hits issued
	decodeOne(t, out, &hits)
	if code != 0 || hits.App != "" || hits.ExpiresAt != nil || !strings.HasPrefix(hits.Token, "hgh_") {
		t.Fatalf("hits issue: %d %+v", code, hits)
	}
	code, out, _ = runCLI(t, noEnv, append([]string{"token", "list", "--org", "acme", "--json"}, nats...)...)
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil || len(list) != 2 {
		t.Fatalf("list: %d %v %s", code, err, out)
	}
	for _, c := range list {
		if _, has := c["token"]; has {
			t.Fatalf("list shows a token: %v", c)
		}
	}
	for _, tok := range []string{is.Token, rot.Token, ren.Token, hits.Token} {
		if strings.Contains(out, tok) {
			t.Fatal("list output holds a token")
		}
	}

	code, out, _ = runCLI(t, noEnv, append([]string{"token", "revoke", is.ID, "--json"}, nats...)...)
	var rev map[string]any
	if err := json.Unmarshal([]byte(out), &rev); code != 0 || err != nil || rev["id"] != is.ID || rev["revoked"] != true {
		t.Fatalf("revoke: %d %v %s", code, err, out)
	}
	refusedWithinSecond(t, s, "/v1/deploys/web", ren.Token)

	// The people's output prints the token once and a curl that works.
	code, out, _ = runCLI(t, noEnv, append([]string{"token", "issue", "--org", "acme", "--kind", "hits", "--app", "shop", "--name", "uptime", "--gateway-url", "http://" + s.listen}, nats...)...)
	if code != 0 || !strings.Contains(out, "curl -sS -X POST http://"+s.listen+"/v1/hits/shop") {
		t.Fatalf("human issue output:\n%s", out)
	}
	_, rest, _ := strings.Cut(out, "Authorization: Bearer ")
	printed, _, _ := strings.Cut(rest, "'")
	if !strings.HasPrefix(printed, "hgh_") || strings.Count(out, printed) != 1 {
		t.Fatalf("want the token exactly once, in the curl command:\n%s", out)
	}
	if c := post(t, s, "/v1/hits/shop", printed); c != 202 {
		t.Fatalf("the printed command's token got %d", c)
	}

	if code := s.stop(); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	logs := s.stderr.String()
	for _, tok := range []string{is.Token, rot.Token, ren.Token, hits.Token, printed} {
		if strings.Contains(logs, tok) {
			t.Fatal("serve log holds a token")
		}
	}
}

func TestExitCodesAndHelp(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	serveOn := func(listen, metricsListen, natsListen string) []string {
		return []string{"serve", "--listen", listen, "--metrics-listen", metricsListen,
			"--embedded-nats-listen", natsListen, "--data-dir", t.TempDir()}
	}
	inUse := busy.Addr().String()
	free := "127.0.0.1:0"
	// A port nothing listens on (nothing can take it by chance: hgtest.Port).
	noNATS := "nats://" + hgtest.Addr(t)
	tests := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"help", []string{"--help"}, 0, "token issue"},
		{"serve help", []string{"serve", "--help"}, 0, "HOOKGATE_MAX_BODY"},
		{"version", []string{"version"}, 0, "go1."},
		{"unknown command", []string{"frobnicate"}, 2, ""},
		{"unknown flag", []string{"serve", "--no-such-flag"}, 2, ""},
		{"missing required", []string{"token", "issue", "--kind", "hits"}, 2, ""},
		{"bad kind", []string{"token", "issue", "--org", "a", "--kind", "push", "--name", "n"}, 2, ""},
		{"deploy without app", []string{"token", "issue", "--org", "acme", "--kind", "deploy", "--name", "n"}, 2, ""},
		{"bad org", []string{"token", "issue", "--org", "Acme.>", "--kind", "hits", "--name", "n"}, 2, ""},
		{"NATS down", []string{"token", "list", "--nats-url", noNATS}, 1, ""},
		{"list with a bad org", []string{"token", "list", "--org", "BAD", "--nats-url", noNATS}, 2, "--org"},
		{"serve with no body allowed", append(serveOn(free, free, free), "--max-body", "0"), 2, "--max-body"},
		{"serve with 9 replicas", append(serveOn(free, free, free), "--replicas", "9"), 2, "replicas"},
		{"serve with a wildcard prefix", append(serveOn(free, free, free), "--subject-prefix", "a.*"), 2, "--subject-prefix"},
		{"serve with a certificate but no key", append(serveOn(free, free, free), "--tls-cert", "c.pem"), 2, "--tls-key"},
		{"a NATS password without a user", []string{"token", "list", "--nats-password", "p", "--nats-url", noNATS}, 2, "--nats-user"},
		{"serve on a webhook port in use", serveOn(inUse, free, free), 1, "webhook listener: listen tcp " + inUse},
		{"serve on a metrics port in use", serveOn(free, inUse, free), 1, "metrics listener: listen tcp " + inUse},
		{"serve on an embedded NATS port in use", serveOn(free, free, inUse), 1, "embedded server on " + inUse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, noEnv, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
			if !strings.Contains(out+errOut, tt.out) {
				t.Fatalf("output lacks %q:\n%s%s", tt.out, out, errOut)
			}
			if tt.code == 1 && strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Fatalf("failure is not one line on stderr: %q", errOut)
			}
		})
	}
}

func TestEnvSetsFlagsAndFlagsWin(t *testing.T) {
	s := serve(t, t.TempDir())
	env := func(k string) string {
		return map[string]string{"HOOKGATE_NATS_URL": s.natsURL, "HOOKGATE_ORG": "fromenv"}[k]
	}
	code, out, errOut := runCLI(t, env, "token", "issue", "--kind", "hits", "--name", "n", "--json")
	var is issued
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	decodeOne(t, out, &is)
	if is.Org != "fromenv" {
		t.Fatalf("org %q, want it from HOOKGATE_ORG", is.Org)
	}
	code, out, _ = runCLI(t, env, "token", "issue", "--org", "fromflag", "--kind", "hits", "--name", "n", "--json")
	decodeOne(t, out, &is)
	if code != 0 || is.Org != "fromflag" {
		t.Fatalf("org %q: a flag given must win over the env", is.Org)
	}
}

func TestTailPrintsAcceptedWebhooks(t *testing.T) {
	s := serve(t, t.TempDir())
	// Every NATS command takes the same names, so one set of flags or
	// HOOKGATE_ variables fits all (tail gets both).
	names := []string{"--nats-url", s.natsURL, "--stream", "HOOKS", "--subject-prefix", "hooks", "--tokens-bucket", "hookgate-tokens", "--replicas", "1"}
	namesEnv := func(k string) string {
		return map[string]string{"HOOKGATE_NATS_URL": s.natsURL, "HOOKGATE_STREAM": "HOOKS", "HOOKGATE_SUBJECT_PREFIX": "hooks",
			"HOOKGATE_TOKENS_BUCKET": "hookgate-tokens", "HOOKGATE_REPLICAS": "1"}[k]
	}
	code, out, errOut := runCLI(t, noEnv, append([]string{"token", "issue", "--org", "acme", "--kind", "hits", "--name", "n", "--json"}, names...)...)
	if code != 0 {
		t.Fatalf("issue: %s", errOut)
	}
	var is issued
	decodeOne(t, out, &is)

	stdout, stderr := &hgtest.LogBuffer{}, &hgtest.LogBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"tail", "--org", "acme"}, names...), namesEnv, stdout, stderr)
	}()
	hgtest.WaitFor(t, 10*time.Second, func() error {
		if !strings.Contains(stderr.String(), "Waiting for webhooks on hooks.acme.*.*") {
			return fmt.Errorf("tail not started: %q", stderr.String())
		}
		return nil
	})
	if c := post(t, s, "/v1/hits/shop", is.Token); c != 202 {
		t.Fatalf("post: %d", c)
	}
	hgtest.WaitFor(t, 5*time.Second, func() error {
		line := stdout.String()
		if !strings.Contains(line, " org=acme app=shop kind=hits credential="+is.ID+` {"from":"cli test"}`) {
			return fmt.Errorf("tail printed %q", line)
		}
		return nil
	})
	cancel()
	if c := <-done; c != 0 {
		t.Fatalf("tail exited %d: %s", c, stderr.String())
	}
}
