package gateway_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/bus"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/internal/hgtest"
)

// selfSigned writes a certificate and key for 127.0.0.1 and returns their
// paths and a pool trusting it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hookgate test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLSListener(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	srv := hgtest.RunNATS(t)
	gw := hgtest.StartGateway(t, srv.ClientURL(), func(c *gateway.Config) { c.TLSCert, c.TLSKey = certFile, keyFile })
	reg := hgtest.Registry(t, srv.ClientURL(), "")
	is := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "tls"})
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest("POST", "https://"+gw.Addr().String()+"/v1/hits/web", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+is.Token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("TLS post: %d %+v", resp.StatusCode, resp.TLS)
	}
	old := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}}}
	if _, err := old.Post("https://"+gw.Addr().String()+"/v1/hits/web", "application/json", strings.NewReader(`{}`)); err == nil {
		t.Fatal("TLS 1.1 was accepted")
	}
	if resp, err := http.Post("http://"+gw.Addr().String()+"/v1/hits/web", "application/json", strings.NewReader(`{}`)); err == nil && resp.StatusCode == 202 {
		t.Fatal("plain HTTP accepted on the TLS listener")
	}
}

func TestNATSWithAuthAndTLS(t *testing.T) {
	t.Run("user and password", func(t *testing.T) {
		opts := hgtest.NATSOptions(t.TempDir())
		opts.Username, opts.Password = "hookgate", "s3cret"
		srv := hgtest.RunNATSWith(t, opts)
		url := fmt.Sprintf("nats://127.0.0.1:%d", srv.Addr().(*net.TCPAddr).Port)
		gw := hgtest.StartGateway(t, url, func(c *gateway.Config) { c.NATS.User, c.NATS.Password = "hookgate", "s3cret" })
		if err := gw.ReadyErr(); err != nil {
			t.Fatal(err)
		}
		nc, err := bus.Dial(bus.ConnConfig{URL: url, User: "hookgate", Password: "wrong"})
		if err == nil {
			nc.Close()
			t.Fatal("wrong password accepted: the server does not require auth")
		}
	})
	t.Run("TLS", func(t *testing.T) {
		certFile, keyFile, _ := selfSigned(t)
		opts := hgtest.NATSOptions(t.TempDir())
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: certFile, KeyFile: keyFile})
		if err != nil {
			t.Fatal(err)
		}
		opts.TLSConfig, opts.TLS = tc, true
		srv := hgtest.RunNATSWith(t, opts)
		url := fmt.Sprintf("tls://127.0.0.1:%d", srv.Addr().(*net.TCPAddr).Port)
		gw := hgtest.StartGateway(t, url, func(c *gateway.Config) { c.NATS.TLSCA = certFile })
		if err := gw.ReadyErr(); err != nil {
			t.Fatal(err)
		}
		if nc, err := bus.Dial(bus.ConnConfig{URL: strings.Replace(url, "tls://", "nats://", 1)}); err == nil {
			nc.Close()
			t.Fatal("plain connection accepted by a TLS-only server")
		}
	})
}
