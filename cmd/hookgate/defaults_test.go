package main

import (
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate/gateway"
)

// The command line's defaults are the library's: serve with no flags maps to
// gateway.DefaultConfig, field by field, so a default changed in its package
// changes the flag and nothing else needs to follow.
func TestServeDefaultsAreTheLibrarys(t *testing.T) {
	var c cli
	parser, err := newParser(&c, io.Discard, io.Discard, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.Parse([]string{"serve"}); err != nil {
		t.Fatal(err)
	}
	s := c.Serve
	got := gateway.Config{
		Listen: s.Listen, MetricsListen: s.MetricsListen, DataDir: s.DataDir, EmbeddedListen: s.EmbeddedNatsListen,
		Stream: s.Stream, TokensBucket: s.TokensBucket, Replicas: s.Replicas, DedupWindow: s.DedupWindow,
		PublishTimeout: s.PublishTimeout, ShutdownTimeout: s.ShutdownTimeout, ShutdownDelay: s.ShutdownDelay,
		StreamMaxAge: s.StreamMaxAge, StreamMaxBytes: s.StreamMaxBytes,
	}
	got.Ingest.SubjectPrefix, got.Ingest.MaxBody, got.Ingest.MaxInFlight = s.SubjectPrefix, s.MaxBody, s.MaxInFlight
	got.Ingest.RateLimit, got.Ingest.RateBurst = s.RateLimit, s.RateBurst
	got.Ingest.AuthFailureRate, got.Ingest.AuthFailureBurst = s.AuthFailureRate, s.AuthFailureBurst
	got.Server.ReadTimeout, got.Server.WriteTimeout, got.Server.IdleTimeout = s.ReadTimeout, s.WriteTimeout, s.IdleTimeout
	got.Server.MaxHeaderSize, got.Server.MaxConnsPerIP, got.Server.MaxConns = s.MaxHeaderSize, s.MaxConnsPerIP, s.MaxConns
	got.Metrics.PerApp, got.Metrics.PerAppMax = s.PerAppMetrics, s.PerAppMetricsMax
	got.Metrics.CredentialSeen, got.Metrics.CredentialMax = s.CredentialMetrics, s.CredentialMetricsMax
	if want := gateway.DefaultConfig(); !reflect.DeepEqual(got, want) {
		t.Fatalf("serve's flag defaults:\n%+v\nthe library's:\n%+v", got, want)
	}
	// The client commands reach the embedded server where serve puts it.
	if want := "nats://" + gateway.DefaultEmbeddedListen; c.Tail.NatsURL != want {
		t.Fatalf("tail --nats-url default %q, want %q", c.Tail.NatsURL, want)
	}
}

// Zero means the same on the command line as in the library: off for the
// rates, and for a limit that cannot be off, a usage error naming its flag.
func TestZeroLimitsAreUsageErrors(t *testing.T) {
	for _, flag := range []string{"--max-body", "--max-in-flight", "--read-timeout", "--write-timeout", "--idle-timeout",
		"--max-header-size", "--max-conns-per-ip", "--max-conns", "--publish-timeout", "--shutdown-timeout", "--dedup-window", "--replicas"} {
		t.Run(flag, func(t *testing.T) {
			code, _, errOut := runCLI(t, noEnv, "serve", "--data-dir", t.TempDir(), flag, "0")
			if code != exitUsage || !strings.Contains(errOut, flag+" 0") {
				t.Fatalf("serve %s 0: exit %d, %q; want %d naming %s", flag, code, errOut, exitUsage, flag)
			}
		})
	}
}

// A bad value in a variable names the variable: the user typed no flag.
func TestBadEnvironmentValueNamesTheVariable(t *testing.T) {
	for _, tt := range []struct{ name, value string }{
		{"HOOKGATE_MAX_BODY", "abc"},
		{"HOOKGATE_PUBLISH_TIMEOUT", "soon"},
		{"HOOKGATE_LOG_FORMAT", "xml"},
		{"HOOKGATE_REPLICAS", "three"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == tt.name {
					return tt.value
				}
				return ""
			}
			start := time.Now()
			code, _, errOut := runCLI(t, getenv, "serve", "--data-dir", t.TempDir())
			want := tt.name + `="` + tt.value + `"`
			if code != exitUsage || !strings.Contains(errOut, want) {
				t.Fatalf("exit %d, %q; want %d naming %s", code, errOut, exitUsage, want)
			}
			if time.Since(start) > 5*time.Second {
				t.Fatal("serve started before refusing its environment")
			}
		})
	}
	// tail takes the same variables: one environment works for every command.
	code, _, errOut := runCLI(t, func(k string) string {
		if k == "HOOKGATE_REPLICAS" {
			return "three"
		}
		return ""
	}, "tail")
	if code != exitUsage || !strings.Contains(errOut, "HOOKGATE_REPLICAS") {
		t.Fatalf("tail with HOOKGATE_REPLICAS=three: exit %d, %q", code, errOut)
	}
}
