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
	// The first SIGTERM or SIGINT ends ctx (shut down, after --shutdown-delay);
	// a second closes hurry (no more delay).
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	hurry := make(chan struct{})
	go func() {
		<-sigs
		cancel()
		<-sigs
		close(hurry)
	}()
	code := runHurried(ctx, hurry, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	signal.Stop(sigs)
	cancel()
	os.Exit(code)
}
