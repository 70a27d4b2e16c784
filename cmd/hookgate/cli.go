package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/alecthomas/kong"

	"github.com/hookgate/hookgate/auth"
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
	Serve   serveCmd   `cmd:"" help:"Run the gateway."`
	Token   tokenCmd   `cmd:"" help:"Issue, rotate, rename, revoke and list credentials."`
	Tail    tailCmd    `cmd:"" help:"Print accepted webhooks from the stream as they arrive."`
	Version versionCmd `cmd:"" help:"Print version, commit and Go version."`
}

// env is what every command gets besides its flags.
type env struct {
	ctx    context.Context
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
}

// exitPanic carries kong's exit request (after --help) out of Parse.
type exitPanic struct{ code int }

// run parses args and runs the command; it returns the process's exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) (code int) {
	var c cli
	parser, err := kong.New(&c,
		kong.Name("hookgate"),
		kong.Description("hookgate takes Hits and Deploy webhooks, checks their tokens against credentials kept in NATS, and stores them in JetStream."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(exitPanic{code}) }),
		kong.DefaultEnvars("HOOKGATE"),
		kong.Resolvers(envResolver(getenv)),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, FlagsLast: true}),
	)
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
	if err := kctx.Run(&env{ctx: ctx, getenv: getenv, stdout: stdout, stderr: stderr}); err != nil {
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

// envResolver reads HOOKGATE_* variables through getenv, so run does not
// depend on the process environment.
func envResolver(getenv func(string) string) kong.Resolver {
	return kong.ResolverFunc(func(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
		if flag.Name == "help" {
			return nil, nil
		}
		name := "HOOKGATE_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(flag.Name))
		if v := getenv(name); v != "" {
			return v, nil
		}
		return nil, nil
	})
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
