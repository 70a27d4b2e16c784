package ingest

import (
	"crypto/tls"
	"fmt"
)

// TLSConfig returns the webhook listener's TLS settings: TLS 1.2 and newer,
// Go's default (modern, AEAD-only for 1.2) cipher suites and curves.
func TLSConfig(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("ingest: load TLS certificate %q and key %q: %w", certFile, keyFile, err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}, nil
}
