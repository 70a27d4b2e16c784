package main

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/internal/hgtest"
)

// The signers below are written from each sender's own documentation, not
// from package signature, so that a misreading there cannot hide here.
// TestSenderSignersMatchTheirDocumentedVectors holds them to the examples
// those documentations publish.

func hmacSHA256(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// githubSignature256 is GitHub's X-Hub-Signature-256 ("Validating webhook
// deliveries"): "sha256=" and the hex HMAC-SHA256 of the payload, keyed with
// the webhook's secret.
func githubSignature256(secret string, body []byte) string {
	return "sha256=" + hex.EncodeToString(hmacSHA256([]byte(secret), body))
}

// githubSignatureSHA1 is the legacy X-Hub-Signature that GitHub still sends
// beside it: "sha1=" and the hex HMAC-SHA1.
func githubSignatureSHA1(secret string, body []byte) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write(body)
	return "sha1=" + hex.EncodeToString(m.Sum(nil))
}

// bitbucketSignature is Bitbucket Cloud's X-Hub-Signature ("Manage webhooks",
// secure webhooks): "sha256=" and the hex HMAC-SHA256 of the body, keyed with
// the webhook's secret.
func bitbucketSignature(secret string, body []byte) string {
	return "sha256=" + hex.EncodeToString(hmacSHA256([]byte(secret), body))
}

// standardWebhooksSignature is one entry of webhook-signature (Standard
// Webhooks, "Signature scheme"): "v1," and the standard base64 HMAC-SHA256 of
// "<msg_id>.<timestamp>.<payload>", keyed with the base64 secret after its
// "whsec_" prefix. GitLab's signing token and Svix sign so.
func standardWebhooksSignature(t *testing.T, secret, id string, ts int64, body []byte) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatalf("Standard Webhooks secret %q: %v", secret, err)
	}
	return "v1," + base64.StdEncoding.EncodeToString(hmacSHA256(key, []byte(id), []byte("."), []byte(strconv.FormatInt(ts, 10)), []byte("."), body))
}

// fluxSignature is the X-Signature of Flux's generic-hmac provider:
// "<hash-function>=<hash>", sha256 and the hex HMAC of the request body,
// keyed with the token of the provider's Secret.
func fluxSignature(token string, body []byte) string {
	return "sha256=" + hex.EncodeToString(hmacSHA256([]byte(token), body))
}

// circleciSignature is CircleCI's circleci-signature ("Validate outbound
// webhooks"): "v1=" and the hex HMAC-SHA256 of the body, keyed with the
// webhook's secret token.
func circleciSignature(secret string, body []byte) string {
	return "v1=" + hex.EncodeToString(hmacSHA256([]byte(secret), body))
}

// pagerdutySignature is PagerDuty's X-PagerDuty-Signature ("Verifying
// Signatures"): for each signing secret, "v1=" and the hex HMAC-SHA256 of the
// body, joined with commas (two while a secret is being rotated).
func pagerdutySignature(body []byte, secrets ...string) string {
	sigs := make([]string, len(secrets))
	for i, s := range secrets {
		sigs[i] = "v1=" + hex.EncodeToString(hmacSHA256([]byte(s), body))
	}
	return strings.Join(sigs, ",")
}

// sentrySignature is Sentry's Sentry-Hook-Signature (integration platform,
// "Webhooks"): the hex HMAC-SHA256 of the body, keyed with the integration's
// client secret.
func sentrySignature(secret string, body []byte) string {
	return hex.EncodeToString(hmacSHA256([]byte(secret), body))
}

// The signers reproduce the examples their senders publish (those that do).
func TestSenderSignersMatchTheirDocumentedVectors(t *testing.T) {
	for _, c := range []struct{ source, got, want string }{
		{"GitHub, Validating webhook deliveries", githubSignature256("It's a Secret to Everybody", []byte("Hello, World!")),
			"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"},
		{"Standard Webhooks, the reference libraries' vector", standardWebhooksSignature(t, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
			"msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`)), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
		{"CircleCI, hello world", circleciSignature("secret", []byte("hello world")),
			"v1=734cc62f32841568f45715aeb9f4d7891324e6d948e4c6c60c0621cdac48623a"},
		{"CircleCI, lalala", circleciSignature("another-secret", []byte("lalala")),
			"v1=daa220016c8f29a8b214fbfc3671aeec2145cfb1e6790184ffb38b6d0425fa00"},
		{"CircleCI, an-important-request-payload", circleciSignature("hunter123", []byte("an-important-request-payload")),
			"v1=9be2242094a9a8c00c64306f382a7f9d691de910b4a266f67bd314ef18ac49fa"},
		{"CircleCI, the Python example", circleciSignature("secret", []byte("foo")),
			"v1=773ba44693c7553d6ee20f61ea5d2757a9a4f4a44d2841ae4e95b52e4cd62db4"},
	} {
		if c.got != c.want {
			t.Errorf("%s: signed %s, the documentation says %s", c.source, c.got, c.want)
		}
	}
}

// recorded is a payload recorded from a sender's documentation
// (testdata/senders/README.md names each source).
func recorded(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "senders", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// token runs the built binary's `token` command against s's NATS; any exit
// but 0 fails the test.
func (s *servedBinary) token(t *testing.T, args ...string) string {
	t.Helper()
	c := exec.Command(s.bin, append(append([]string{"token"}, args...), "--nats-url", s.natsURL)...)
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	if err := c.Run(); err != nil {
		t.Fatalf("hookgate token %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String()
}

// issue is `hookgate token issue --org acme ARGS --json` with the key ring
// serve made in its data dir.
func (s *servedBinary) issue(t *testing.T, args ...string) issuedSigning {
	t.Helper()
	args = append([]string{"issue", "--org", "acme", "--json", "--secret-keys", filepath.Join(s.dataDir, "secret-keys")}, args...)
	var is issuedSigning
	decodeOne(t, s.token(t, args...), &is)
	return is
}

// deliver posts body to url with exactly header: names as written (senders
// that send lowercase names are sent so) and repeats kept.
func deliver(t *testing.T, url string, body []byte, header http.Header) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("post %s: %v", url, err)
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, reply, resp.Header
}

// accepted is a 202's body, which must be exactly the contract's object.
type accepted struct {
	Stream    string `json:"stream"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
}

func acceptedReply(t *testing.T, status int, reply []byte) accepted {
	t.Helper()
	var a accepted
	d := json.NewDecoder(bytes.NewReader(reply))
	d.DisallowUnknownFields()
	if status != http.StatusAccepted || d.Decode(&a) != nil || d.More() || a.Stream != "HOOKS" || a.Seq == 0 {
		t.Fatalf("reply %d %s; want 202 {\"stream\": \"HOOKS\", \"seq\": N, \"duplicate\": ...}", status, reply)
	}
	return a
}

// stored is what a consumer finds of one accepted webhook.
type stored struct {
	app, kind               string // its subject's tokens (org acme)
	credential, auth, event string // Hook-Credential, Hook-Auth, Hook-Event ("": none)
	key                     string // Hook-Idempotency-Key, with a Nats-Msg-Id ("": neither)
}

// checkStored reads the last message on the subject of want and holds it to
// the reply, the data and the contract's headers, and no others.
func checkStored(t *testing.T, js jetstream.JetStream, a accepted, data []byte, want stored) {
	t.Helper()
	m := hgtest.LastMessage(t, js, "HOOKS", "hooks.acme."+want.app+"."+want.kind)
	if m.Sequence != a.Seq {
		t.Errorf("the reply says seq %d, the subject's last message is seq %d", a.Seq, m.Sequence)
	}
	if !bytes.Equal(m.Data, data) {
		t.Errorf("stored data differs from what was sent:\n%s\nwant\n%s", m.Data, data)
	}
	wantHdr := map[string]string{"Hook-Credential": want.credential, "Hook-Auth": want.auth, "Hook-Event": want.event, "Hook-Idempotency-Key": want.key}
	got := map[string][]string{}
	for k, v := range m.Header {
		got[textproto.CanonicalMIMEHeaderKey(k)] = v
	}
	for k, v := range wantHdr {
		if v == "" {
			if _, ok := got[k]; ok {
				t.Errorf("stored header %s = %q; the contract has none here", k, got[k])
			}
		} else if !slices.Equal(got[k], []string{v}) {
			t.Errorf("stored header %s = %q, want %q", k, got[k], v)
		}
	}
	switch id := got["Nats-Msg-Id"]; {
	case want.key == "" && len(id) != 0:
		t.Errorf("stored Nats-Msg-Id %q without a key", id)
	case want.key != "" && (len(id) != 1 || id[0] == "" || id[0] == want.key):
		t.Errorf("stored Nats-Msg-Id %q for key %q; want one id derived from the key", id, want.key)
	}
	for k, v := range got {
		if _, ok := wantHdr[k]; !ok && k != "Nats-Msg-Id" {
			t.Errorf("stored header %s = %q is not one of the contract's", k, v)
		}
	}
}

// lastSeq is the stream's last sequence: what a request that stores nothing
// leaves as it was.
func lastSeq(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "HOOKS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// refusal checks an error reply: its status, its code, a message, and the
// WWW-Authenticate of a 401.
func refusal(t *testing.T, status int, reply []byte, hdr http.Header, wantStatus int, wantCode string) {
	t.Helper()
	var e struct{ Error, Message string }
	if status != wantStatus || json.Unmarshal(reply, &e) != nil || e.Error != wantCode || e.Message == "" {
		t.Fatalf("reply %d %s; want %d %s", status, reply, wantStatus, wantCode)
	}
	if wa := hdr.Get("WWW-Authenticate"); status == http.StatusUnauthorized && wa != `Bearer realm="hookgate"` {
		t.Errorf("401 with WWW-Authenticate %q", wa)
	}
}

// firstRingKey is the first key of a key ring file: lines "<key id>
// <standard base64 of 32 bytes>", "#" starting a comment.
func firstRingKey(t *testing.T, path string) (string, []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		line, _, _ = strings.Cut(line, "#")
		if f := strings.Fields(line); len(f) == 2 {
			key, err := base64.StdEncoding.DecodeString(f[1])
			if err != nil || len(key) != 32 {
				t.Fatalf("key ring line %q: %v", line, err)
			}
			return f[0], key
		}
	}
	t.Fatalf("no key in %s", path)
	return "", nil
}

// sealSecret seals as the contract says: base64url without padding of the
// nonce (12 bytes) and the AES-256-GCM ciphertext, the credential's id as
// additional authenticated data.
func sealSecret(t *testing.T, key []byte, id string, secret []byte) string {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(gcm.Seal(nonce, nonce, secret, []byte(id)))
}

// putPlatformCredential writes an organization-wide hits credential of
// acme as a platform that issues its own signing credentials does: its
// token's tok.<sha256> record (which makes it valid) and cred.<id> with
// "token_sha256", both with "signing".
func putPlatformCredential(t *testing.T, natsURL, id, keyID, sealed string) {
	t.Helper()
	_, js := hgtest.Connect(t, natsURL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, "hookgate-tokens")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("the platform's own token for " + id))
	cred := map[string]any{
		"id": id, "org": "acme", "app": "", "kind": "hits", "name": "from the platform", "version": 1,
		"created_at": time.Now().UTC().Format(time.RFC3339), "expires_at": nil,
		"signing": map[string]string{"key": keyID, "sealed": sealed},
	}
	for _, put := range []struct {
		key   string
		extra map[string]any
	}{
		{"tok." + hex.EncodeToString(sum[:]), nil},
		{"cred." + id, map[string]any{"token_sha256": hex.EncodeToString(sum[:])}},
	} {
		rec := maps.Clone(cred)
		maps.Copy(rec, put.extra)
		value, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, put.key, value); err != nil {
			t.Fatal(err)
		}
	}
}

func randomText(t *testing.T, n int, encode func([]byte) string) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return encode(b)
}

// Headers as each sender sends them (its documentation's list; names as it
// writes them), signed.

func githubHeaders(secret, event, delivery string, body []byte) http.Header {
	return http.Header{
		"Content-Type":                           {"application/json"},
		"User-Agent":                             {"GitHub-Hookshot/044aadd"},
		"X-GitHub-Hook-ID":                       {"292430182"},
		"X-GitHub-Event":                         {event},
		"X-GitHub-Delivery":                      {delivery},
		"X-GitHub-Hook-Installation-Target-Type": {"repository"},
		"X-GitHub-Hook-Installation-Target-ID":   {"79929171"},
		"X-Hub-Signature":                        {githubSignatureSHA1(secret, body)},
		"X-Hub-Signature-256":                    {githubSignature256(secret, body)},
	}
}

// gitlabHeaders are GitLab's for a Deployment Hook whose Idempotency-Key is
// key; gitlabSigned adds a signing token's (Standard Webhooks, webhook-id =
// Idempotency-Key), gitlabToken a secret token's.
func gitlabHeaders(key string) http.Header {
	return http.Header{
		"Content-Type":          {"application/json"},
		"User-Agent":            {"GitLab/18.6.0"},
		"X-Gitlab-Event":        {"Deployment Hook"},
		"X-Gitlab-Instance":     {"https://gitlab.example.com"},
		"X-Gitlab-Webhook-UUID": {"1b5a5a5e-5f0e-4d0e-9b1e-1b2f3c4d5e6f"},
		"X-Gitlab-Event-UUID":   {"4c0d2c3e-7f68-4b8f-a3b5-5d6c7e8f9a0b"},
		"Idempotency-Key":       {key},
	}
}

func gitlabSigned(t *testing.T, secret, key string, ts int64, body []byte) http.Header {
	h := gitlabHeaders(key)
	h["webhook-id"] = []string{key}
	h["webhook-timestamp"] = []string{strconv.FormatInt(ts, 10)}
	h["webhook-signature"] = []string{standardWebhooksSignature(t, secret, key, ts, body)}
	return h
}

func gitlabToken(token, key string) http.Header {
	h := gitlabHeaders(key)
	h["X-Gitlab-Token"] = []string{token}
	return h
}

// svixSigned signs with secret and with a rotated-away key, space-separated.
func svixSigned(t *testing.T, secret, id string, ts int64, body []byte) http.Header {
	old := "whsec_" + randomText(t, 24, base64.StdEncoding.EncodeToString)
	return http.Header{
		"Content-Type":   {"application/json"},
		"User-Agent":     {"Svix-Webhooks/1.60.0"},
		"svix-id":        {id},
		"svix-timestamp": {strconv.FormatInt(ts, 10)},
		"svix-signature": {standardWebhooksSignature(t, old, id, ts, body) + " " + standardWebhooksSignature(t, secret, id, ts, body)},
	}
}

const (
	githubDelivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
	gitlabKey      = "e2bc5ab5-2c1f-4dd4-8d0b-bb0d3f5b4c4a"
	svixID         = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
	// refusedBudget is the refused-token burst the binary runs with: a
	// client behind the trusted proxy exhausts it; the test's own address
	// stays far under it.
	refusedBudget = 40
)

// sendersGateway is the built binary TestSendersThroughTheBinary talks to,
// with the credentials it issued through the binary's `token issue`.
type sendersGateway struct {
	srv *servedBinary
	gw  string // http://listen
	js  jetstream.JetStream

	github, bitbucket, gitlab, svix, flux, circleci issuedSigning // --signing
	pagerduty, sentry                               issuedSigning // --signing-secret-file, SigningSecret set from it
	plain                                           issuedSigning // no signing secret

	firstSeq map[string]uint64 // each signature-table row's seq
	refused  int               // invalid_signature replies seen
	answers  map[string]bool   // their bodies: one answer for all
}

func startSendersGateway(t *testing.T) *sendersGateway {
	srv := startBinary(t, "--trusted-proxies", "127.0.0.0/8", "--auth-failure-rate", "0.01", "--auth-failure-burst", strconv.Itoa(refusedBudget))
	_, js := hgtest.Connect(t, srv.natsURL)
	g := &sendersGateway{srv: srv, gw: "http://" + srv.listen, js: js, firstSeq: map[string]uint64{}, answers: map[string]bool{}}

	// Secrets that PagerDuty and Sentry generate themselves, imported from a
	// file saved from their pages (a trailing newline and all).
	pagerdutySecret := randomText(t, 48, base64.RawStdEncoding.EncodeToString)
	sentrySecret := randomText(t, 32, hex.EncodeToString)
	importFile := func(secret string) string {
		f, err := os.CreateTemp(t.TempDir(), "secret")
		if err == nil {
			_, err = f.WriteString(secret + "\n")
		}
		if err == nil {
			err = f.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
		return f.Name()
	}
	g.github = srv.issue(t, "--kind", "deploy", "--app", "web", "--name", "github", "--signing")
	g.bitbucket = srv.issue(t, "--kind", "deploy", "--app", "site", "--name", "bitbucket", "--signing")
	g.gitlab = srv.issue(t, "--kind", "deploy", "--app", "api", "--name", "gitlab", "--signing")
	g.svix = srv.issue(t, "--kind", "hits", "--name", "svix", "--signing")
	g.flux = srv.issue(t, "--kind", "deploy", "--app", "cluster", "--name", "flux", "--signing")
	g.circleci = srv.issue(t, "--kind", "deploy", "--app", "mobile", "--name", "circleci", "--signing")
	g.pagerduty = srv.issue(t, "--kind", "hits", "--app", "checkout", "--name", "pagerduty", "--signing-secret-file", importFile(pagerdutySecret))
	g.sentry = srv.issue(t, "--kind", "hits", "--app", "frontend", "--name", "sentry", "--signing-secret-file", importFile(sentrySecret))
	g.plain = srv.issue(t, "--kind", "deploy", "--app", "docs", "--name", "gitlab secret token")
	for _, is := range []issuedSigning{g.github, g.bitbucket, g.gitlab, g.svix, g.flux, g.circleci} {
		if !strings.HasPrefix(is.SigningSecret, "whsec_") {
			t.Fatalf("%s: issue --signing printed signing_secret %q", is.Name, is.SigningSecret)
		}
	}
	for _, is := range []issuedSigning{g.pagerduty, g.sentry, g.plain} {
		if is.SigningSecret != "" {
			t.Fatalf("%s: printed a signing secret it did not generate", is.Name)
		}
	}
	g.pagerduty.SigningSecret, g.sentry.SigningSecret = pagerdutySecret, sentrySecret
	return g
}

// signatureFailures is hookgate_auth_failures_total{reason="signature"}, 0
// before the first.
func (g *sendersGateway) signatureFailures(t *testing.T) float64 {
	v, _, err := hgtest.Metric("http://"+g.srv.metricsAddr, `hookgate_auth_failures_total{reason="signature"}`)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// accept delivers and checks the 202 (a first delivery, not a duplicate)
// and what was stored.
func (g *sendersGateway) accept(t *testing.T, path string, body []byte, h http.Header, data []byte, want stored) {
	t.Helper()
	status, reply, _ := deliver(t, g.gw+path, body, h)
	a := acceptedReply(t, status, reply)
	if a.Duplicate {
		t.Errorf("a first delivery answered %s", reply)
	}
	checkStored(t, g.js, a, data, want)
}

// refuse delivers and checks the refusal, and that nothing was stored.
func (g *sendersGateway) refuse(t *testing.T, path string, body []byte, h http.Header, wantStatus int, wantCode string) http.Header {
	t.Helper()
	before := lastSeq(t, g.js)
	status, reply, hdr := deliver(t, g.gw+path, body, h)
	g.count(status, reply)
	refusal(t, status, reply, hdr, wantStatus, wantCode)
	if after := lastSeq(t, g.js); after != before {
		t.Errorf("a refused request stored something: last seq %d, then %d", before, after)
	}
	return hdr
}

// Senders that sign, from outside with the built binary: for each row of the
// contract's signature table, a payload recorded from that sender's own
// documentation, signed the way it signs, with the headers it sends, under a
// credential issued (or, for senders that make their own secret, imported)
// with the binary's `token issue`; then every other line of the section.
func TestSendersThroughTheBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: builds and runs the binary")
	}
	g := startSendersGateway(t)
	failuresBefore := g.signatureFailures(t)

	t.Run("signature table", g.signatureTable)
	t.Run("sender ids are idempotency keys", g.senderIDs)
	t.Run("tokens beside signatures", g.tokensBesideSignatures)
	t.Run("GitHub ping", g.githubPing)
	t.Run("GitHub form content type", g.githubForm)
	t.Run("refused", g.refusals)
	t.Run("credential lifecycle", g.credentialLifecycle)
	t.Run("over the refused-token budget", g.overBudget)

	// One answer for all, each counted under reason="signature".
	if g.refused == 0 {
		t.Fatal("no invalid_signature reply was seen")
	}
	if len(g.answers) != 1 {
		t.Errorf("invalid_signature is not one answer for all: %q", slices.Sorted(maps.Keys(g.answers)))
	}
	hgtest.WaitFor(t, 5*time.Second, func() error {
		if got := g.signatureFailures(t) - failuresBefore; got != float64(g.refused) {
			return fmt.Errorf(`hookgate_auth_failures_total{reason="signature"} rose by %v for %d invalid_signature replies`, got, g.refused)
		}
		return nil
	})
}

// One row per line of the signature table: 202, the payload stored byte for
// byte with exactly the contract's headers.
func (g *sendersGateway) signatureTable(t *testing.T) {
	rows := []struct {
		sender  string
		cred    issuedSigning
		route   string // deploys or hits
		app     string
		payload string // in testdata/senders
		headers func(secret string, body []byte) http.Header
		want    stored // subject and credential filled in from the above
	}{
		{"GitHub deployment_status", g.github, "deploys", "web", "github-deployment_status.json",
			func(s string, b []byte) http.Header { return githubHeaders(s, "deployment_status", githubDelivery, b) },
			stored{auth: "hub-signature", event: "deployment_status", key: githubDelivery}},
		{"Bitbucket Cloud X-Hub-Signature sha256", g.bitbucket, "deploys", "site", "github-deployment_status.json",
			func(s string, b []byte) http.Header {
				return http.Header{
					"Content-Type":     {"application/json"},
					"User-Agent":       {"Bitbucket-Webhooks/2.0"},
					"X-Event-Key":      {"repo:push"},
					"X-Hook-UUID":      {"{4c0f5b3e-0d1a-4f3e-9b58-6f4a0e3c1d2b}"},
					"X-Request-UUID":   {"8a1b2c3d-4e5f-6789-abcd-ef0123456789"},
					"X-Attempt-Number": {"1"},
					"X-Hub-Signature":  {bitbucketSignature(s, b)},
				}
			},
			stored{auth: "hub-signature", event: "repo:push"}},
		{"GitLab Deployment Hook, signing token", g.gitlab, "deploys", "api", "gitlab-deployment-hook.json",
			func(s string, b []byte) http.Header { return gitlabSigned(t, s, gitlabKey, time.Now().Unix(), b) },
			stored{auth: "standard-webhooks", event: "Deployment Hook", key: gitlabKey}},
		{"Svix svix- headers", g.svix, "hits", "events", "standard-webhooks-example.json",
			func(s string, b []byte) http.Header { return svixSigned(t, s, svixID, time.Now().Unix(), b) },
			stored{auth: "standard-webhooks", key: svixID}},
		{"Flux generic-hmac event", g.flux, "deploys", "cluster", "flux-event.json",
			func(s string, b []byte) http.Header {
				return http.Header{
					"Content-Type":   {"application/json"},
					"User-Agent":     {"Go-http-client/1.1"},
					"Gotk-Component": {"kustomize-controller"},
					"X-Signature":    {fluxSignature(s, b)},
				}
			},
			stored{auth: "flux"}},
		{"CircleCI workflow-completed", g.circleci, "deploys", "mobile", "circleci-workflow-completed.json",
			func(s string, b []byte) http.Header {
				return http.Header{
					"content-type":        {"application/json"},
					"user-agent":          {"CircleCI-Webhook/1.0"},
					"circleci-event-type": {"workflow-completed"},
					"circleci-signature":  {circleciSignature(s, b)},
				}
			},
			stored{auth: "circleci", event: "workflow-completed"}},
		{"PagerDuty v3 event, secret being rotated", g.pagerduty, "hits", "checkout", "pagerduty-incident-priority_updated.json",
			func(s string, b []byte) http.Header {
				return http.Header{
					"Content-Type":          {"application/json"},
					"X-Webhook-Id":          {"01DFE4ZLXB5Y2LP3RZHXPHPZPV"},
					"X-PagerDuty-Signature": {pagerdutySignature(b, "the secret before rotation", s)},
				}
			},
			stored{auth: "pagerduty"}},
		{"Sentry issue alert", g.sentry, "hits", "frontend", "sentry-event_alert.json",
			func(s string, b []byte) http.Header {
				return http.Header{
					"Content-Type":          {"application/json"},
					"Request-ID":            {"b8e4f36e-1f5a-4a39-9d2b-2c1e8f6e6f10"},
					"Sentry-Hook-Resource":  {"event_alert"},
					"Sentry-Hook-Timestamp": {strconv.FormatInt(time.Now().Unix(), 10)},
					"Sentry-Hook-Signature": {sentrySignature(s, b)},
				}
			},
			stored{auth: "sentry", event: "event_alert"}},
	}
	for _, r := range rows {
		t.Run(r.sender, func(t *testing.T) {
			body := recorded(t, r.payload)
			status, reply, _ := deliver(t, g.gw+"/v1/"+r.route+"/"+r.app+"?credential="+r.cred.ID, body, r.headers(r.cred.SigningSecret, body))
			a := acceptedReply(t, status, reply)
			if a.Duplicate {
				t.Errorf("a first delivery answered %s", reply)
			}
			want := r.want
			want.app, want.kind, want.credential = r.app, r.cred.Kind, r.cred.ID
			checkStored(t, g.js, a, body, want)
			g.firstSeq[r.sender] = a.Seq
		})
	}
}

// GitHub's redelivery (the same request) and a Standard Webhooks retry (the
// same id, a new timestamp and signature) are duplicates of the first.
func (g *sendersGateway) senderIDs(t *testing.T) {
	github := recorded(t, "github-deployment_status.json")
	example := recorded(t, "standard-webhooks-example.json")
	for _, c := range []struct {
		name, path, row string
		body            []byte
		header          http.Header
	}{
		{"GitHub redelivery", "/v1/deploys/web?credential=" + g.github.ID, "GitHub deployment_status", github,
			githubHeaders(g.github.SigningSecret, "deployment_status", githubDelivery, github)},
		{"Svix retry", "/v1/hits/events?credential=" + g.svix.ID, "Svix svix- headers", example,
			svixSigned(t, g.svix.SigningSecret, svixID, time.Now().Unix()+1, example)},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, reply, _ := deliver(t, g.gw+c.path, c.body, c.header)
			if a := acceptedReply(t, status, reply); !a.Duplicate || a.Seq != g.firstSeq[c.row] {
				t.Errorf("%s; want duplicate true with the first seq %d", reply, g.firstSeq[c.row])
			}
		})
	}
}

// GitLab's secret token is a token; Authorization wins over it; a request
// with either is never treated as signed.
func (g *sendersGateway) tokensBesideSignatures(t *testing.T) {
	deployment := recorded(t, "gitlab-deployment-hook.json")
	for _, c := range []struct {
		name   string
		path   string
		header http.Header
		want   stored // the subject and credential are docs's
	}{
		{"X-Gitlab-Token", "/v1/deploys/docs", gitlabToken(g.plain.Token, "gitlab-secret-token"),
			stored{auth: "gitlab-token", event: "Deployment Hook", key: "gitlab-secret-token"}},
		{"Authorization beside X-Gitlab-Token", "/v1/deploys/docs", func() http.Header {
			h := gitlabToken("not-the-token-0123456789", "authorization-and-gitlab-token")
			h["Authorization"] = []string{"Bearer " + g.plain.Token}
			return h
		}(), stored{event: "Deployment Hook", key: "authorization-and-gitlab-token"}},
		{"Authorization beside a wrong signature", "/v1/deploys/docs?credential=" + g.github.ID, func() http.Header {
			h := githubHeaders("not the secret", "deployment", "b3ad4f6e-0000-4000-8000-000000000001", deployment)
			h["Authorization"] = []string{"Bearer " + g.plain.Token}
			return h
		}(), stored{event: "deployment", key: "b3ad4f6e-0000-4000-8000-000000000001"}},
		{"X-Gitlab-Token beside a wrong signature", "/v1/deploys/docs?credential=" + g.gitlab.ID, func() http.Header {
			h := gitlabSigned(t, "whsec_"+randomText(t, 32, base64.StdEncoding.EncodeToString), "gitlab-token-and-signature", time.Now().Unix(), deployment)
			h["X-Gitlab-Token"] = []string{g.plain.Token}
			return h
		}(), stored{auth: "gitlab-token", event: "Deployment Hook", key: "gitlab-token-and-signature"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := c.want
			want.app, want.kind, want.credential = "docs", "deploy", g.plain.ID
			g.accept(t, c.path, deployment, c.header, deployment, want)
		})
	}
}

// GitHub's ping passes every check and is answered 204; nothing is stored.
func (g *sendersGateway) githubPing(t *testing.T) {
	ping := recorded(t, "github-ping.json")
	before := lastSeq(t, g.js)
	status, reply, _ := deliver(t, g.gw+"/v1/deploys/web?credential="+g.github.ID, ping,
		githubHeaders(g.github.SigningSecret, "ping", "4a5e9c4e-0000-4000-8000-00000000a001", ping))
	if status != http.StatusNoContent {
		t.Fatalf("ping: %d %s; want 204", status, reply)
	}
	if after := lastSeq(t, g.js); after != before {
		t.Errorf("ping stored something: the stream's last seq went from %d to %d", before, after)
	}
}

// GitHub's form content type: verified over the raw body, stored decoded. A
// sender id or an event outside its limits is not used.
func (g *sendersGateway) githubForm(t *testing.T) {
	payload := recorded(t, "github-deployment_status.json")
	form := []byte("payload=" + url.QueryEscape(string(payload)))
	h := githubHeaders(g.github.SigningSecret, "deployment_status", "0c9b3a9e-0000-4000-8000-00000000f001", form)
	h["Content-Type"] = []string{"application/x-www-form-urlencoded"}
	g.accept(t, "/v1/deploys/web?credential="+g.github.ID, form, h, payload, stored{app: "web", kind: "deploy",
		credential: g.github.ID, auth: "hub-signature", event: "deployment_status", key: "0c9b3a9e-0000-4000-8000-00000000f001"})

	t.Run("oversized delivery id and event", func(t *testing.T) {
		h := githubHeaders(g.github.SigningSecret, strings.Repeat("e", 101), strings.Repeat("d", 201), payload)
		g.accept(t, "/v1/deploys/web?credential="+g.github.ID, payload, h, payload,
			stored{app: "web", kind: "deploy", credential: g.github.ID, auth: "hub-signature"})
	})
}

// Refusals: a sender's own headers with one thing wrong each.
func (g *sendersGateway) refusals(t *testing.T) {
	circle := recorded(t, "circleci-workflow-completed.json")
	deployment := recorded(t, "gitlab-deployment-hook.json")
	github := func(mutate func(h http.Header)) http.Header {
		h := githubHeaders(g.github.SigningSecret, "deployment_status", "9f2c1d7e-0000-4000-8000-0000000000e1", circle)
		mutate(h)
		return h
	}
	githubForm := func(body string) http.Header {
		h := githubHeaders(g.github.SigningSecret, "deployment_status", "9f2c1d7e-0000-4000-8000-0000000000e4", []byte(body))
		h["Content-Type"] = []string{"application/x-www-form-urlencoded"}
		return h
	}
	now := time.Now().Unix()
	for _, c := range []struct {
		name   string
		path   string
		body   []byte
		header http.Header
		status int
		code   string
	}{
		{"wrong signature", "/v1/deploys/web?credential=" + g.github.ID, circle,
			githubHeaders("not the secret", "deployment_status", "9f2c1d7e-0000-4000-8000-0000000000e2", circle), 401, "invalid_signature"},
		{"credential without a signature", "/v1/deploys/web?credential=" + g.github.ID, circle,
			github(func(h http.Header) { delete(h, "X-Hub-Signature-256"); delete(h, "X-Hub-Signature") }), 401, "invalid_signature"},
		{"unknown credential", "/v1/deploys/web?credential=no-such-credential", circle, github(func(http.Header) {}), 401, "invalid_signature"},
		{"credential without a signing secret", "/v1/deploys/docs?credential=" + g.plain.ID, circle, github(func(h http.Header) {
			h["X-Hub-Signature-256"] = []string{githubSignature256(g.plain.Token, circle)}
		}), 401, "invalid_signature"},
		{"Bitbucket sha1=", "/v1/deploys/site?credential=" + g.bitbucket.ID, circle, http.Header{
			"Content-Type": {"application/json"}, "X-Event-Key": {"repo:push"}, "X-Hub-Signature": {githubSignatureSHA1(g.bitbucket.SigningSecret, circle)},
		}, 401, "invalid_signature"},
		{"two X-Hub-Signature-256", "/v1/deploys/web?credential=" + g.github.ID, circle, github(func(h http.Header) {
			h["X-Hub-Signature-256"] = []string{githubSignature256(g.github.SigningSecret, circle), githubSignature256(g.github.SigningSecret, circle)}
		}), 401, "invalid_signature"},
		{"the table's first header is the one checked", "/v1/deploys/mobile?credential=" + g.circleci.ID, circle, http.Header{
			"Content-Type": {"application/json"}, "circleci-signature": {circleciSignature(g.circleci.SigningSecret, circle)},
			"X-Hub-Signature-256": {githubSignature256("not the secret", circle)},
		}, 401, "invalid_signature"},
		{"webhook-timestamp 6 minutes old", "/v1/deploys/api?credential=" + g.gitlab.ID, deployment,
			gitlabSigned(t, g.gitlab.SigningSecret, "gitlab-6-minutes-old", now-360, deployment), 401, "invalid_signature"},
		{"webhook-timestamp 6 minutes ahead", "/v1/deploys/api?credential=" + g.gitlab.ID, deployment,
			gitlabSigned(t, g.gitlab.SigningSecret, "gitlab-6-minutes-ahead", now+360, deployment), 401, "invalid_signature"},
		{"webhook-id of 201 characters", "/v1/hits/events?credential=" + g.svix.ID, deployment,
			svixSigned(t, g.svix.SigningSecret, strings.Repeat("m", 201), now, deployment), 401, "invalid_signature"},
		{"ping with a wrong signature", "/v1/deploys/web?credential=" + g.github.ID, circle,
			githubHeaders("not the secret", "ping", "9f2c1d7e-0000-4000-8000-0000000000e3", circle), 401, "invalid_signature"},
		{"two X-Gitlab-Token", "/v1/deploys/docs", deployment, func() http.Header {
			h := gitlabToken(g.plain.Token, "two-gitlab-tokens")
			h["X-Gitlab-Token"] = []string{g.plain.Token, g.plain.Token}
			return h
		}(), 401, "invalid_token"},
		{"a signature, no credential", "/v1/deploys/web", circle, github(func(http.Header) {}), 401, "missing_token"},
		{"nothing at all", "/v1/hits/checkout", circle, http.Header{"Content-Type": {"application/json"}}, 401, "missing_token"},
		{"Authorization is the one used", "/v1/deploys/docs", deployment, func() http.Header {
			h := gitlabToken(g.plain.Token, "authorization-refused")
			h["Authorization"] = []string{"Bearer hgd_not_a_real_token_0123456789"}
			return h
		}(), 401, "invalid_token"},
		{"form content type from another sender", "/v1/deploys/mobile?credential=" + g.circleci.ID, []byte("payload=%7B%7D"), http.Header{
			"content-type": {"application/x-www-form-urlencoded"}, "circleci-signature": {circleciSignature(g.circleci.SigningSecret, []byte("payload=%7B%7D"))},
		}, 415, "unsupported_media_type"},
		{"form body of two fields", "/v1/deploys/web?credential=" + g.github.ID, []byte("payload=%7B%7D&other=1"),
			githubForm("payload=%7B%7D&other=1"), 415, "unsupported_media_type"},
		{"form payload of the wrong shape", "/v1/deploys/web?credential=" + g.github.ID, []byte("payload=%5B%5D"),
			githubForm("payload=%5B%5D"), 400, "invalid_body"},
	} {
		t.Run(c.name, func(t *testing.T) { g.refuse(t, c.path, c.body, c.header, c.status, c.code) })
	}
}

// Revoked and expired credentials' signatures are refused; a credential a
// platform wrote itself is found in the bucket, and one whose secret the
// ring cannot unseal is refused.
func (g *sendersGateway) credentialLifecycle(t *testing.T) {
	t.Run("revoked", func(t *testing.T) {
		body := recorded(t, "flux-event.json")
		h := http.Header{"Content-Type": {"application/json"}, "Gotk-Component": {"kustomize-controller"}, "X-Signature": {fluxSignature(g.flux.SigningSecret, body)}}
		var revoked struct {
			ID      string `json:"id"`
			Revoked bool   `json:"revoked"`
		}
		if out := g.srv.token(t, "revoke", g.flux.ID, "--json"); jsonDecode(out, &revoked) != nil || revoked.ID != g.flux.ID || !revoked.Revoked {
			t.Fatalf("revoke --json printed %s", out)
		}
		g.refusedWithin(t, time.Second, "/v1/deploys/cluster?credential="+g.flux.ID, body, h)
	})
	t.Run("expired", func(t *testing.T) {
		expiring := g.srv.issue(t, "--kind", "deploy", "--app", "preview", "--name", "circleci preview", "--signing", "--expires", "3s")
		body := recorded(t, "circleci-workflow-completed.json")
		h := http.Header{"content-type": {"application/json"}, "circleci-event-type": {"workflow-completed"},
			"circleci-signature": {circleciSignature(expiring.SigningSecret, body)}}
		status, reply, _ := deliver(t, g.gw+"/v1/deploys/preview?credential="+expiring.ID, body, h)
		acceptedReply(t, status, reply)
		g.refusedWithin(t, 6*time.Second, "/v1/deploys/preview?credential="+expiring.ID, body, h)
	})
	t.Run("written by a platform", func(t *testing.T) {
		keyID, key := firstRingKey(t, filepath.Join(g.srv.dataDir, "secret-keys"))
		secret := []byte("the-secret-the-platform-made")
		body := recorded(t, "pagerduty-incident-priority_updated.json")
		h := http.Header{"Content-Type": {"application/json"}, "X-PagerDuty-Signature": {pagerdutySignature(body, string(secret))}}
		putPlatformCredential(t, g.srv.natsURL, "platform-1", keyID, sealSecret(t, key, "platform-1", secret))
		g.accept(t, "/v1/hits/billing?credential=platform-1", body, h, body,
			stored{app: "billing", kind: "hits", credential: "platform-1", auth: "pagerduty"})
		putPlatformCredential(t, g.srv.natsURL, "platform-2", "retired-key", sealSecret(t, make([]byte, 32), "platform-2", secret))
		g.refuse(t, "/v1/hits/billing?credential=platform-2", body, h, 401, "invalid_signature")
	})
}

// refusedWithin waits up to d for a signed request that was valid to be
// refused with invalid_signature.
func (g *sendersGateway) refusedWithin(t *testing.T, d time.Duration, path string, body []byte, h http.Header) {
	t.Helper()
	var status int
	var reply []byte
	var hdr http.Header
	hgtest.WaitFor(t, d, func() error {
		if status, reply, hdr = deliver(t, g.gw+path, body, h); status != http.StatusUnauthorized {
			return fmt.Errorf("its signature still answers %d %s", status, reply)
		}
		return nil
	})
	g.count(status, reply)
	refusal(t, status, reply, hdr, 401, "invalid_signature")
}

// count notes an invalid_signature reply.
func (g *sendersGateway) count(status int, reply []byte) {
	if status == http.StatusUnauthorized && strings.Contains(string(reply), `"invalid_signature"`) {
		g.refused++
		g.answers[string(reply)] = true
	}
}

// invalid_signature counts against the client address's refused-token
// budget; over it, a signed request is served only if its credential is in
// memory and its signature verifies there, otherwise 429.
func (g *sendersGateway) overBudget(t *testing.T) {
	body := recorded(t, "github-deployment_status.json")
	from := func(h http.Header) http.Header {
		h["X-Forwarded-For"] = []string{"203.0.113.9"}
		return h
	}
	for i := range refusedBudget {
		g.refuse(t, "/v1/deploys/web?credential="+g.github.ID, body,
			from(githubHeaders("not the secret", "deployment_status", fmt.Sprintf("budget-%d", i), body)), 401, "invalid_signature")
	}
	for _, c := range []struct {
		name, path string
		header     http.Header
	}{
		{"wrong signature", "/v1/deploys/web?credential=" + g.github.ID, githubHeaders("not the secret", "deployment_status", "budget-over", body)},
		{"unknown credential", "/v1/deploys/web?credential=never-issued", githubHeaders(g.github.SigningSecret, "deployment_status", "budget-unknown", body)},
	} {
		t.Run(c.name, func(t *testing.T) {
			hdr := g.refuse(t, c.path, body, from(c.header), 429, "rate_limited")
			if ra, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || ra < 1 {
				t.Errorf("Retry-After %q", hdr.Get("Retry-After"))
			}
		})
	}
	t.Run("known credential, good signature", func(t *testing.T) {
		g.accept(t, "/v1/deploys/web?credential="+g.github.ID, body, from(githubHeaders(g.github.SigningSecret, "deployment_status", "budget-good", body)), body,
			stored{app: "web", kind: "deploy", credential: g.github.ID, auth: "hub-signature", event: "deployment_status", key: "budget-good"})
	})
}
