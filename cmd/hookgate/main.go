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
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	hup := make(chan struct{}, 1)
	go func() {
		for range hups {
			select {
			case hup <- struct{}{}:
			default: // one reload pending is enough
			}
		}
	}()
	code := runSignalled(ctx, hurry, hup, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	signal.Stop(sigs)
	signal.Stop(hups)
	cancel()
	os.Exit(code)
}
