package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hookgate/hookgate/internal/hgtest"
)

// The real binary re-reads its key ring on SIGHUP, the way an operator adds a
// key and retires an old one (docs/operators.md): a credential sealed under a
// key the gateway has not loaded is refused until SIGHUP and served after
// it; after `token reseal` and the old key's removal, another SIGHUP keeps
// every credential served; a ring file that does not load leaves the one in
// use.
func TestSIGHUPReloadsTheKeyRing(t *testing.T) {
	srv := startBinary(t)
	ring := filepath.Join(srv.dataDir, "secret-keys")
	created, err := os.ReadFile(ring)
	if err != nil {
		t.Fatalf("serve made no key ring in its data dir: %v", err)
	}
	// The contract's file: mode 0600, comments, and one key line "<key id>
	// <standard base64 of 32 bytes>".
	if st, err := os.Stat(ring); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the key ring serve made: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
	var keys [][]string
	for _, line := range strings.Split(string(created), "\n") {
		if f := strings.Fields(line); len(f) > 0 && !strings.HasPrefix(f[0], "#") {
			keys = append(keys, f)
		}
	}
	if len(keys) != 1 || len(keys[0]) != 2 {
		t.Fatalf("the key ring serve made holds %d key lines, want one of a key id and a key", len(keys))
	}
	if key, err := base64.StdEncoding.DecodeString(keys[0][1]); err != nil || len(key) != 32 {
		t.Fatalf("the key ring's key is not the standard base64 of 32 bytes (%d bytes, %v)", len(key), err)
	}
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(ring, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	deliverSigned := func(is issuedSigning) int {
		t.Helper()
		body := []byte(`{"deployment":{"environment":"production"}}`)
		status, _, _ := deliver(t, "http://"+srv.listen+"/v1/deploys/web?credential="+is.ID, body,
			http.Header{"X-Hub-Signature-256": {githubSignature256(is.SigningSecret, body)}})
		return status
	}
	// hup sends SIGHUP and waits for the log line that says what became of it.
	hup := func(logged string) {
		t.Helper()
		was := strings.Count(srv.stderr.String(), logged)
		if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		hgtest.WaitFor(t, 10*time.Second, func() error {
			if strings.Count(srv.stderr.String(), logged) == was {
				return errors.New("no new log line " + logged)
			}
			return nil
		})
	}

	before := srv.issue(t, "--kind", "deploy", "--app", "web", "--name", "before", "--signing")
	if s := deliverSigned(before); s != http.StatusAccepted {
		t.Fatalf("signed under the ring serve made: %d, want 202", s)
	}

	// A new key, first in the file: `token` commands seal with it from now
	// on; the running gateway does not know it yet.
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	added := "k-added " + base64.StdEncoding.EncodeToString(key) + "\n"
	write(added + string(created))
	after := srv.issue(t, "--kind", "deploy", "--app", "web", "--name", "after", "--signing")
	if s := deliverSigned(after); s != http.StatusUnauthorized {
		t.Fatalf("sealed under a key the gateway has not loaded: %d, want 401", s)
	}
	hup(`"msg":"key ring reloaded"`)
	for _, is := range []issuedSigning{before, after} {
		if s := deliverSigned(is); s != http.StatusAccepted {
			t.Fatalf("%s after SIGHUP: %d, want 202", is.Name, s)
		}
	}

	// Reseal everything under the new key, retire the old one, SIGHUP.
	srv.token(t, "reseal", "--secret-keys", ring)
	write(added)
	hup(`"msg":"key ring reloaded"`)
	for _, is := range []issuedSigning{before, after} {
		if s := deliverSigned(is); s != http.StatusAccepted {
			t.Fatalf("%s after reseal and the old key's retirement: %d, want 202", is.Name, s)
		}
	}

	// A ring that does not load leaves the one in use.
	write("this is not a key ring\n")
	hup(`"msg":"key ring not reloaded; the previous one stays in use"`)
	for _, is := range []issuedSigning{before, after} {
		if s := deliverSigned(is); s != http.StatusAccepted {
			t.Fatalf("%s after a SIGHUP with a broken ring file: %d, want 202", is.Name, s)
		}
	}
	if ss := srv.stderr.String(); strings.Contains(ss, before.SigningSecret) || strings.Contains(ss, after.SigningSecret) ||
		strings.Contains(ss, strings.Fields(added)[1]) {
		t.Error("the log holds a signing secret or a ring key")
	}
}

// With --nats-url a gateway never makes a key ring: without one it warns at
// start, serves tokens, and refuses every signed request as invalid_signature
// (it cannot unseal), while a gateway with the ring serves the same request.
func TestNATSURLWithoutKeyRing(t *testing.T) {
	withRing := startBinary(t)
	signing := withRing.issue(t, "--kind", "deploy", "--app", "web", "--name", "signing", "--signing")
	bearer := withRing.issue(t, "--kind", "deploy", "--app", "web", "--name", "bearer")
	noRing := startBinary(t, "--nats-url", withRing.natsURL)

	if !strings.Contains(noRing.stderr.String(), `"msg":"no key ring: signed requests are refused`) {
		t.Errorf("serve --nats-url without a ring did not warn at start:\n%s", noRing.stderr.String())
	}
	if _, err := os.Stat(filepath.Join(noRing.dataDir, "secret-keys")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("serve --nats-url made a key ring in its data dir (stat: %v)", err)
	}
	body := []byte(`{"deployment":{"environment":"production"}}`)
	signed := http.Header{"X-Hub-Signature-256": {githubSignature256(signing.SigningSecret, body)}}
	for _, gw := range []struct {
		name string
		srv  *servedBinary
		want int
	}{{"without a ring", noRing, http.StatusUnauthorized}, {"with the ring", withRing, http.StatusAccepted}} {
		status, reply, _ := deliver(t, "http://"+gw.srv.listen+"/v1/deploys/web?credential="+signing.ID, body, signed)
		if status != gw.want || (status == http.StatusUnauthorized && !strings.Contains(string(reply), `"invalid_signature"`)) {
			t.Errorf("signed request to the gateway %s: %d %s, want %d", gw.name, status, reply, gw.want)
		}
	}
	status, reply, _ := deliver(t, "http://"+noRing.listen+"/v1/deploys/web", body, http.Header{"Authorization": {"Bearer " + bearer.Token}})
	if status != http.StatusAccepted {
		t.Errorf("bearer token to the gateway without a ring: %d %s, want 202", status, reply)
	}
}
