// Command natsd is a bare NATS server with JetStream for benchmarks: the
// broker runs as its own process, so its CPU and memory can be read from
// /proc apart from the gateway's.
//
//	go run ./bench/natsd -store /tmp/js -port 0
//
// It prints one line, "natsd ready <client URL>", once it takes connections,
// and stops on SIGTERM or SIGINT.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

func main() {
	host := flag.String("host", "127.0.0.1", "listen host")
	port := flag.Int("port", 0, "listen port; 0 picks a free one")
	store := flag.String("store", "", "JetStream storage directory (required)")
	flag.Parse()
	if *store == "" {
		fmt.Fprintln(os.Stderr, "natsd: -store is required")
		os.Exit(2)
	}
	p := *port
	if p == 0 {
		p = server.RANDOM_PORT // nats-server reads 0 as 4222
	}
	s, err := server.NewServer(&server.Options{
		ServerName: "bench-natsd",
		Host:       *host,
		Port:       p,
		JetStream:  true,
		StoreDir:   *store,
		NoLog:      true,
		NoSigs:     true,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "natsd:", err)
		os.Exit(1)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		fmt.Fprintln(os.Stderr, "natsd: server did not start")
		os.Exit(1)
	}
	fmt.Printf("natsd ready %s\n", s.ClientURL())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	s.Shutdown()
	s.WaitForShutdown()
}
