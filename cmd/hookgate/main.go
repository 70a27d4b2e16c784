// Command hookgate is the webhook ingestion gateway: it authenticates Hits and
// Deploy webhooks against credentials kept in NATS and stores them in
// JetStream. See `hookgate --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
