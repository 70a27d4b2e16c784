package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const hosts = "nats-1,nats-2,localhost,127.0.0.1"

func readAll(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, f := range []string{caFile, certFile, keyFile} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		out[f] = b
	}
	return out
}

// TestGencert: the files make a TLS pair that the CA vouches for, for every
// host, as a server and as a client (the routes are mutual TLS); the key is
// readable by its owner only.
func TestGencert(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if err := run([]string{"-dir", dir, "-hosts", hosts}, now); err != nil {
		t.Fatal(err)
	}
	files := readAll(t, dir)
	pair, err := tls.X509KeyPair(files[certFile], files[keyFile])
	if err != nil {
		t.Fatalf("server.pem and server-key.pem: %v", err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(files[caFile]) {
		t.Fatal("ca.pem holds no certificate")
	}
	for _, h := range []string{"nats-1", "nats-2", "localhost", "127.0.0.1"} {
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := cert.Verify(x509.VerifyOptions{DNSName: h, Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("%s, usage %v: %v", h, usage, err)
			}
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "nats-9", Roots: roots}); err == nil {
		t.Error("the certificate is good for a host not asked for")
	}
	if fi, err := os.Stat(filepath.Join(dir, keyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("server-key.pem mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}

// TestGencertKeepsGoodFiles: a second run keeps what the first wrote; a run
// for another host, or within 30 days of the expiry, or over a broken file,
// writes new ones.
func TestGencertKeepsGoodFiles(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if err := run([]string{"-dir", dir, "-hosts", hosts}, now); err != nil {
		t.Fatal(err)
	}
	first := readAll(t, dir)
	same := func(want bool, what string) {
		t.Helper()
		got := readAll(t, dir)
		if eq := bytes.Equal(got[certFile], first[certFile]) && bytes.Equal(got[caFile], first[caFile]); eq != want {
			t.Errorf("%s: files kept %v, want %v", what, eq, want)
		}
		first = got
	}
	if err := run([]string{"-dir", dir, "-hosts", hosts}, now.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	same(true, "a day later")
	if err := run([]string{"-dir", dir, "-hosts", hosts + ",nats-3"}, now); err != nil {
		t.Fatal(err)
	}
	same(false, "another host")
	if err := run([]string{"-dir", dir, "-hosts", hosts + ",nats-3"}, now.Add(validFor-renewBefore+time.Hour)); err != nil {
		t.Fatal(err)
	}
	same(false, "near the expiry")
	if err := os.WriteFile(filepath.Join(dir, caFile), []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-dir", dir, "-hosts", hosts + ",nats-3"}, now); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, dir); bytes.Equal(got[certFile], first[certFile]) {
		t.Error("a broken ca.pem: files kept, want new ones")
	}
	if err := run([]string{"-dir", dir}, now); err == nil {
		t.Error("no -hosts: nil error, want one")
	}
}
