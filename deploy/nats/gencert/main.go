// Command gencert writes the TLS files of the compose stack's NATS cluster: a
// private CA (ca.pem) and one certificate with its key (server.pem,
// server-key.pem) for every NATS server, good for serving clients and for
// both ends of the mutual-TLS routes. The CA's key is not kept: the next
// certificate comes with a new CA.
//
// It keeps files that are there and still good (they verify against ca.pem
// for every host asked, and expire in more than 30 days), so restarting the
// stack keeps its certificates. The compose service nats-certs runs it with
// the Go image's toolchain and nothing else:
//
//	go run /gencert/main.go -dir /certs -hosts nats-1,nats-2,nats-3,localhost,127.0.0.1
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The files gencert writes in -dir.
const (
	caFile   = "ca.pem"
	certFile = "server.pem"
	keyFile  = "server-key.pem"
)

const (
	validFor    = 365 * 24 * time.Hour
	renewBefore = 30 * 24 * time.Hour
)

func main() {
	if err := run(os.Args[1:], time.Now()); err != nil {
		fmt.Fprintln(os.Stderr, "gencert:", err)
		os.Exit(1)
	}
}

func run(args []string, now time.Time) error {
	fs := flag.NewFlagSet("gencert", flag.ContinueOnError)
	dir := fs.String("dir", "", "where to write ca.pem, server.pem and server-key.pem")
	hosts := fs.String("hosts", "", "comma-separated DNS names and IP addresses of the servers")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var names []string
	for h := range strings.SplitSeq(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			names = append(names, h)
		}
	}
	if *dir == "" || len(names) == 0 {
		return errors.New("-dir and -hosts are required")
	}
	why := check(*dir, names, now)
	if why == nil {
		fmt.Printf("gencert: %s holds a good certificate for %s; kept\n", *dir, strings.Join(names, ", "))
		return nil
	}
	if !errors.Is(why, os.ErrNotExist) {
		fmt.Printf("gencert: writing new files: %v\n", why)
	}
	if err := generate(*dir, names, now); err != nil {
		return err
	}
	fmt.Printf("gencert: wrote %s, %s and %s in %s for %s\n", caFile, certFile, keyFile, *dir, strings.Join(names, ", "))
	return nil
}

// check returns nil when dir's files make a certificate for every host,
// signed by ca.pem and valid past renewBefore; else why not.
func check(dir string, hosts []string, now time.Time) error {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, certFile), filepath.Join(dir, keyFile))
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, caFile))
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("%s holds no certificate", caFile)
	}
	cert := pair.Leaf
	if cert == nil {
		if cert, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return err
		}
	}
	if cert.NotAfter.Before(now.Add(renewBefore)) {
		return fmt.Errorf("%s expires %s", certFile, cert.NotAfter.Format(time.DateOnly))
	}
	for _, h := range hosts {
		_, err := cert.Verify(x509.VerifyOptions{
			DNSName:     h,
			Roots:       roots,
			CurrentTime: now,
			KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// generate writes a new CA and a certificate for hosts into dir.
func generate(dir string, hosts []string, now time.Time) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "hookgate compose NATS CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, ca, err := sign(caTmpl, nil, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0]},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(validFor),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	certDER, _, err := sign(tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	// The key first and the CA last: a run cut short leaves files that
	// check refuses, so the next run starts again.
	for _, f := range []struct {
		name  string
		block string
		der   []byte
		mode  os.FileMode
	}{
		{keyFile, "PRIVATE KEY", keyDER, 0o600},
		{certFile, "CERTIFICATE", certDER, 0o644},
		{caFile, "CERTIFICATE", caDER, 0o644},
	} {
		if err := writeFile(filepath.Join(dir, f.name), pem.EncodeToMemory(&pem.Block{Type: f.block, Bytes: f.der}), f.mode); err != nil {
			return err
		}
	}
	return nil
}

// sign makes tmpl a certificate signed by parent (itself when nil).
func sign(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) ([]byte, *x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, nil, fmt.Errorf("sign %s: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	return der, cert, err
}

// writeFile replaces name with data in one rename, with mode.
func writeFile(name string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".gencert-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
