package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/ingest"
	"github.com/hookgate/hookgate/metrics"
	"github.com/hookgate/hookgate/secretring"
)

// Exit statuses of the contract.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// cli is the whole command line. Every flag can also be set as
// HOOKGATE_<FLAG_IN_UPPER_SNAKE>; a flag given wins.
type cli struct {
	Serve       serveCmd       `cmd:"" help:"Run the gateway."`
	Token       tokenCmd       `cmd:"" help:"Issue, rotate, rename, revoke and list credentials; reseal their signing secrets."`
	Tail        tailCmd        `cmd:"" help:"Print accepted webhooks from the stream as they arrive." set:"stream_help=JetStream stream of accepted webhooks."`
	Version     versionCmd     `cmd:"" help:"Print version, commit and Go version."`
	Healthcheck healthcheckCmd `cmd:"" help:"Exit 0 when the gateway on this host is ready (or, with --live, alive); for container healthchecks."`
}

// env is what every command gets besides its flags.
type env struct {
	ctx    context.Context // ends at the first SIGTERM or SIGINT
	hurry  <-chan struct{} // closes at the second; nil: never
	hup    <-chan struct{} // a SIGHUP: serve re-reads its key ring; nil: none
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
}

// exitPanic carries kong's exit request (after --help) out of Parse.
type exitPanic struct{ code int }

// run parses args and runs the command; it returns the process's exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) (code int) {
	return runSignalled(ctx, nil, nil, args, getenv, stdout, stderr)
}

// runSignalled is run with the process's other signals: hurry closes at a
// second SIGTERM or SIGINT, hup gets each SIGHUP.
func runSignalled(ctx context.Context, hurry, hup <-chan struct{}, args []string, getenv func(string) string, stdout, stderr io.Writer) (code int) {
	var c cli
	parser, err := newParser(&c, stdout, stderr, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "hookgate: %v\n", err)
		return exitFail
	}
	defer func() {
		r := recover()
		if p, ok := r.(exitPanic); ok {
			code = p.code
		} else if r != nil {
			panic(r)
		}
	}()
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "hookgate: %v\n", err)
		if kctx != nil {
			fmt.Fprintf(stderr, "Run 'hookgate %s --help' for usage.\n", kctx.Command())
		}
		return exitUsage
	}
	if err := kctx.Run(&env{ctx: ctx, hurry: hurry, hup: hup, getenv: getenv, stdout: stdout, stderr: stderr}); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "hookgate: %v\n", err)
			return exitUsage
		}
		fmt.Fprintf(stderr, "hookgate: %s\n", oneLine(err))
		return exitFail
	}
	return exitOK
}

// defaults are the flags' defaults, as ${name} in their tags: each is the
// constant of the package that owns it, so a default changes in one place.
var defaults = kong.Vars{
	"default_listen":                 gateway.DefaultListen,
	"default_metrics_listen":         gateway.DefaultMetricsListen,
	"default_data_dir":               gateway.DefaultDataDir,
	"default_embedded_listen":        gateway.DefaultEmbeddedListen,
	"default_nats_url":               "nats://" + gateway.DefaultEmbeddedListen,
	"default_gateway_url":            "http://127.0.0.1" + gateway.DefaultListen,
	"default_stream":                 gateway.DefaultStream,
	"default_subject_prefix":         ingest.DefaultSubjectPrefix,
	"default_tokens_bucket":          gateway.DefaultTokensBucket,
	"default_replicas":               strconv.Itoa(gateway.DefaultReplicas),
	"default_dedup_window":           shortDuration(gateway.DefaultDedupWindow),
	"default_stream_max_age":         shortDuration(gateway.DefaultStreamMaxAge),
	"default_stream_max_bytes":       strconv.Itoa(gateway.DefaultStreamMaxBytes),
	"default_publish_timeout":        shortDuration(gateway.DefaultPublishTimeout),
	"default_shutdown_timeout":       shortDuration(gateway.DefaultShutdownTimeout),
	"default_shutdown_delay":         shortDuration(gateway.DefaultShutdownDelay),
	"default_max_body":               strconv.Itoa(ingest.DefaultMaxBody),
	"default_max_in_flight":          strconv.Itoa(ingest.DefaultMaxInFlight),
	"default_auth_failure_rate":      strconv.FormatFloat(ingest.DefaultAuthFailureRate, 'g', -1, 64),
	"default_auth_failure_burst":     strconv.Itoa(ingest.DefaultAuthFailureBurst),
	"default_read_timeout":           shortDuration(ingest.DefaultReadTimeout),
	"default_write_timeout":          shortDuration(ingest.DefaultWriteTimeout),
	"default_idle_timeout":           inSeconds(ingest.DefaultIdleTimeout), // the contract writes 120s
	"default_max_header_size":        strconv.Itoa(ingest.DefaultMaxHeaderSize),
	"default_max_conns_per_ip":       strconv.Itoa(ingest.DefaultMaxConnsPerIP),
	"default_max_conns":              strconv.Itoa(ingest.DefaultMaxConns),
	"default_per_app_metrics_max":    strconv.Itoa(metrics.DefaultPerAppMax),
	"default_credential_metrics_max": strconv.Itoa(metrics.DefaultCredentialMax),
	"default_secret_keys":            gateway.DefaultDataDir + "/" + secretring.FileName, // the token commands'; serve's is in its --data-dir
}

// shortDuration writes d as the contract does ("2m", "168h", not
// Duration.String's "2m0s", "168h0m0s").
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// inSeconds writes d in whole seconds ("120s").
func inSeconds(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) + "s" }

// usageError is a mistake in the command line found after parsing.
type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// checkNames is a usage error for the first given (non-empty) organization or
// application flag that is not a valid name; pairs are flag, value.
func checkNames(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if v := pairs[i+1]; v != "" && !auth.ValidName([]byte(v)) {
			return usagef("%s %q: want ^[a-z0-9][a-z0-9_-]{0,62}$", pairs[i], v)
		}
	}
	return nil
}

// newParser builds the command line of c. The environment is read one way
// only, through getenv (so run does not depend on the process's), and help
// names each flag's variable.
func newParser(c *cli, stdout, stderr io.Writer, getenv func(string) string) (*kong.Kong, error) {
	return kong.New(c,
		kong.Name("hookgate"),
		kong.Description("hookgate takes Hits and Deploy webhooks, checks their tokens against credentials kept in NATS, and stores them in JetStream."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(exitPanic{code}) }),
		defaults, natsNamesHelp,
		kong.PostBuild(hideSharedOnly),
		kong.Resolvers(envResolver(getenv)),
		kong.ValueFormatter(helpWithEnv),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, FlagsLast: true}),
	)
}

// envName is the variable that sets a flag: HOOKGATE_<FLAG_IN_UPPER_SNAKE>.
func envName(flag string) string {
	return "HOOKGATE_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(flag))
}

// envResolver reads HOOKGATE_* variables through getenv. A value the flag
// cannot take is a usage error that names the variable, not the flag the
// user never typed.
func envResolver(getenv func(string) string) kong.Resolver {
	return kong.ResolverFunc(func(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
		if flag.Name == "help" {
			return nil, nil
		}
		name := envName(flag.Name)
		v := getenv(name)
		if v == "" {
			return nil, nil
		}
		if flag.Enum != "" && !flag.EnumMap()[v] {
			return nil, fmt.Errorf("%s=%q: must be one of %s", name, v, strings.Join(flag.EnumSlice(), ", "))
		}
		scratch := reflect.New(flag.Target.Type()).Elem()
		if err := flag.Parse(kong.ScanFromTokens(kong.Token{Type: kong.FlagValueToken, Value: v}), scratch); err != nil {
			return nil, fmt.Errorf("%s=%q: %w", name, v, err)
		}
		return v, nil
	})
}

// helpWithEnv is kong's help text of a flag followed by its variable, as
// kong's DefaultEnvars would print it.
func helpWithEnv(value *kong.Value) string {
	if value.Flag == nil || value.Name == "help" {
		return value.Help
	}
	suffix := "($" + envName(value.Name) + ")"
	switch {
	case strings.HasSuffix(value.Help, "."):
		return value.Help[:len(value.Help)-1] + " " + suffix + "."
	case value.Help == "":
		return suffix
	default:
		return value.Help + " " + suffix
	}
}

// sharedOnly are the flags a command takes only so that one set of
// HOOKGATE_ variables works for every command (serve's stream and bucket
// names); they do nothing there, so its help does not list them.
var sharedOnly = map[string][]string{
	"tail":  {"tokens-bucket", "replicas"},
	"token": {"stream", "subject-prefix"},
}

func hideSharedOnly(k *kong.Kong) error {
	for _, cmd := range k.Model.Children {
		hide := sharedOnly[cmd.Name]
		var walk func(n *kong.Node)
		walk = func(n *kong.Node) {
			for _, f := range n.Flags {
				if slices.Contains(hide, f.Name) {
					f.Hidden = true
				}
			}
			for _, child := range n.Children {
				walk(child)
			}
		}
		walk(cmd)
	}
	return nil
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
