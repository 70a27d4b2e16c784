package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/internal/hgtest"
	"github.com/hookgate/hookgate/secretring"
)

type issuedSigning struct {
	issued
	SigningSecret string `json:"signing_secret"`
}

// bucketValues returns every key of the credentials bucket with its value.
func bucketValues(t *testing.T, natsURL string) map[string]string {
	t.Helper()
	_, js := hgtest.Connect(t, natsURL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, "hookgate-tokens")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out[k] = string(e.Value())
	}
	return out
}

func credRecord(t *testing.T, values map[string]string, id string) auth.Record {
	t.Helper()
	var rec auth.Record
	if err := json.Unmarshal([]byte(values[auth.CredentialKey(id)]), &rec); err != nil {
		t.Fatalf("cred.%s: %v", id, err)
	}
	return rec
}

func oneLineFailure(t *testing.T, code int, errOut, want string) {
	t.Helper()
	if code != exitFail || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, want) {
		t.Fatalf("exit %d, stderr %q; want 1 and one line with %q", code, errOut, want)
	}
}

// Signing secrets through the CLI: printed once, held sealed, imported,
// rotated, and resealed under a new key that then suffices alone.
func TestTokenSigningThroughCLI(t *testing.T) {
	s := serve(t, t.TempDir())
	dir := t.TempDir()
	ringPath := filepath.Join(dir, secretring.FileName)
	ring, err := secretring.Create(ringPath)
	if err != nil {
		t.Fatal(err)
	}
	nats := []string{"--nats-url", s.natsURL, "--secret-keys", ringPath}
	issue := func(extra ...string) (int, string, string) {
		args := append([]string{"token", "issue", "--org", "acme", "--kind", "hits", "--app", "shop", "--name", "github"}, extra...)
		return runCLI(t, noEnv, append(args, nats...)...)
	}

	code, out, errOut := issue("--signing", "--json")
	if code != 0 {
		t.Fatalf("issue --signing: %d %s", code, errOut)
	}
	var is issuedSigning
	decodeOne(t, out, &is)
	b64, ok := strings.CutPrefix(is.SigningSecret, "whsec_")
	if key, err := base64.StdEncoding.DecodeString(b64); !ok || err != nil || len(key) != 32 {
		t.Fatalf("signing_secret %q", is.SigningSecret)
	}
	if strings.Count(out, is.SigningSecret) != 1 {
		t.Fatal("the secret is not printed exactly once")
	}
	values := bucketValues(t, s.natsURL)
	for k, v := range values {
		if strings.Contains(v, "whsec_") || strings.Contains(v, b64[:16]) {
			t.Fatalf("%s holds a signing secret in the clear: %s", k, v)
		}
	}
	rec := credRecord(t, values, is.ID)
	if got, err := ring.Unseal(is.ID, *rec.Signing); err != nil || string(got) != is.SigningSecret {
		t.Fatalf("cred.%s seal opens to %q, %v", is.ID, got, err)
	}
	if c := post(t, s, "/v1/hits/shop", is.Token); c != 202 {
		t.Fatalf("the signing credential's token: %d", c)
	}

	// For people: what the sender's settings page asks for, the secret once.
	code, out, _ = issue("--signing", "--gateway-url", "http://hooks.example.com/")
	if code != 0 {
		t.Fatalf("human issue: %d", code)
	}
	id := strings.Fields(strings.TrimPrefix(out, "Issued credential "))[0]
	id = strings.TrimSuffix(id, ":")
	for _, want := range []string{
		"URL:           http://hooks.example.com/v1/hits/shop?credential=" + id + "\n",
		"Secret:        whsec_",
		"Content type:  application/json (for GitHub, application/x-www-form-urlencoded works too)",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("human output lacks %q:\n%s", want, out)
		}
	}
	_, rest, _ := strings.Cut(out, "Secret:        ")
	secret, _, _ := strings.Cut(rest, "\n")
	if strings.Count(out, secret) != 1 {
		t.Fatalf("the secret is not printed exactly once:\n%s", out)
	}

	// Imported from a file: trimmed, sealed, never printed.
	secretFile := filepath.Join(dir, "gitlab-secret")
	if err := os.WriteFile(secretFile, []byte("  the-secret-gitlab-made\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = issue("--signing-secret-file", secretFile, "--json")
	var imp issuedSigning
	decodeOne(t, out, &imp)
	if code != 0 || imp.SigningSecret != "" || strings.Contains(out, "the-secret-gitlab-made") {
		t.Fatalf("import: %d %s %s", code, out, errOut)
	}
	rec = credRecord(t, bucketValues(t, s.natsURL), imp.ID)
	if got, err := ring.Unseal(imp.ID, *rec.Signing); err != nil || string(got) != "the-secret-gitlab-made" {
		t.Fatalf("imported secret opens to %q, %v", got, err)
	}
	code, out, _ = issue("--signing-secret-file", secretFile)
	if code != 0 || strings.Contains(out, "the-secret-gitlab-made") || !strings.Contains(out, "Secret:        the one imported from "+secretFile+" (not shown)") {
		t.Fatalf("human import output:\n%s", out)
	}

	// Mistakes.
	if code, _, errOut := issue("--signing", "--signing-secret-file", secretFile); code != exitUsage {
		t.Fatalf("--signing with --signing-secret-file: exit %d, %s", code, errOut)
	}
	bad := filepath.Join(dir, "bad-secret")
	if err := os.WriteFile(bad, []byte("whsec_!!!"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = issue("--signing-secret-file", bad)
	oneLineFailure(t, code, errOut, "not standard base64")
	noRing := []string{"--nats-url", s.natsURL, "--secret-keys", filepath.Join(dir, "missing")}
	code, _, errOut = runCLI(t, noEnv, append([]string{"token", "issue", "--org", "acme", "--kind", "hits", "--name", "n", "--signing"}, noRing...)...)
	oneLineFailure(t, code, errOut, "no key ring at "+filepath.Join(dir, "missing"))
	code, _, errOut = runCLI(t, noEnv, append([]string{"token", "rotate", is.ID}, noRing...)...)
	oneLineFailure(t, code, errOut, "no key ring")

	// Rotate: a new secret, printed once; the old one is gone.
	code, out, errOut = runCLI(t, noEnv, append([]string{"token", "rotate", is.ID, "--json"}, nats...)...)
	if code != 0 {
		t.Fatalf("rotate: %s", errOut)
	}
	var rot issuedSigning
	decodeOne(t, out, &rot)
	if rot.Version != 2 || !strings.HasPrefix(rot.SigningSecret, "whsec_") || rot.SigningSecret == is.SigningSecret {
		t.Fatalf("rotated %+v", rot)
	}
	// A credential without a secret rotates without a ring.
	code, out, _ = runCLI(t, noEnv, "token", "issue", "--org", "acme", "--kind", "hits", "--name", "plain", "--json", "--nats-url", s.natsURL)
	var plain issuedSigning
	decodeOne(t, out, &plain)
	if code != 0 || plain.SigningSecret != "" {
		t.Fatalf("plain issue: %d %s", code, out)
	}
	if code, out, errOut := runCLI(t, noEnv, append([]string{"token", "rotate", plain.ID, "--json"}, noRing...)...); code != 0 || strings.Contains(out, "signing_secret") {
		t.Fatalf("rotate of a credential without a secret, no ring: %d %s %s", code, out, errOut)
	}

	// Reseal under a new first key; then the old key can go.
	newLine, err := secretring.NewKeyLine("k-new")
	if err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(ringPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ringPath, append([]byte(newLine+"\n"), old...), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, noEnv, append([]string{"token", "reseal"}, nats...)...)
	if code != 0 || !strings.Contains(out, "under key k-new") || !strings.Contains(out, "No record needs "+ring.SealingKey()) {
		t.Fatalf("reseal: %d %s %s", code, out, errOut)
	}
	if err := os.WriteFile(ringPath, []byte(newLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	newOnly, err := secretring.Load(ringPath)
	if err != nil {
		t.Fatal(err)
	}
	values = bucketValues(t, s.natsURL)
	for k, v := range values {
		if strings.Contains(v, `"key":"`+ring.SealingKey()+`"`) {
			t.Fatalf("%s still sealed under the old key: %s", k, v)
		}
	}
	for _, want := range []struct{ id, secret string }{{rot.ID, rot.SigningSecret}, {imp.ID, "the-secret-gitlab-made"}} {
		rec := credRecord(t, values, want.id)
		if got, err := newOnly.Unseal(want.id, *rec.Signing); err != nil || string(got) != want.secret {
			t.Fatalf("%s after reseal, old key gone: %q, %v", want.id, got, err)
		}
	}
	code, _, errOut = runCLI(t, noEnv, append([]string{"token", "reseal"}, noRing...)...)
	oneLineFailure(t, code, errOut, "no key ring")
}

// Rotation with a grace period through the CLI and a running gateway: the
// old token works until the printed end, then every gateway refuses it; list
// shows it meanwhile; the next token command removes it; revoke ends a grace.
func TestTokenRotateWithGraceThroughCLI(t *testing.T) {
	s := serve(t, t.TempDir())
	nats := []string{"--nats-url", s.natsURL}
	code, out, errOut := runCLI(t, noEnv, append([]string{"token", "issue", "--org", "acme", "--kind", "deploy", "--app", "web", "--name", "ci", "--json"}, nats...)...)
	if code != 0 {
		t.Fatalf("issue: %s", errOut)
	}
	var is issued
	decodeOne(t, out, &is)

	if code, _, errOut := runCLI(t, noEnv, append([]string{"token", "rotate", is.ID, "--grace", "-1s"}, nats...)...); code != exitUsage {
		t.Fatalf("negative grace: exit %d %s", code, errOut)
	}
	code, out, errOut = runCLI(t, noEnv, append([]string{"token", "rotate", is.ID, "--grace", "2s", "--gateway-url", "http://" + s.listen}, nats...)...)
	if code != 0 {
		t.Fatalf("rotate --grace: %s", errOut)
	}
	_, rest, ok := strings.Cut(out, "The previous token keeps working until ")
	if !ok {
		t.Fatalf("rotate output does not say when the grace ends:\n%s", out)
	}
	endText, _, _ := strings.Cut(rest, ": change")
	end, err := time.Parse(time.RFC3339, endText)
	if err != nil {
		t.Fatalf("grace end %q: %v", endText, err)
	}
	_, rest, _ = strings.Cut(out, "Authorization: Bearer ")
	newToken, _, _ := strings.Cut(rest, "'")

	for _, tok := range []string{is.Token, newToken} {
		if c := post(t, s, "/v1/deploys/web", tok); c != 202 && time.Now().Before(end) {
			t.Fatalf("token in the grace period: %d", c)
		}
	}
	code, out, _ = runCLI(t, noEnv, append([]string{"token", "list", "--json"}, nats...)...)
	var list []issued
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil {
		t.Fatalf("list: %d %v", code, err)
	}
	if time.Now().Before(end) && (len(list) != 2 || list[0].Version != 2 || list[1].Version != 1 || list[1].ExpiresAt == nil || *list[1].ExpiresAt != endText) {
		t.Fatalf("list in the grace period: %+v", list)
	}

	// At the end, refused within a second; the new token goes on.
	time.Sleep(time.Until(end))
	hgtest.WaitFor(t, time.Second, func() error {
		if c := post(t, s, "/v1/deploys/web", is.Token); c != 401 {
			return fmt.Errorf("old token answers %d after its grace", c)
		}
		return nil
	})
	if c := post(t, s, "/v1/deploys/web", newToken); c != 202 {
		t.Fatalf("new token after the grace: %d", c)
	}
	oldKey := auth.TokenKey(auth.HashToken([]byte(is.Token)))
	if _, ok := bucketValues(t, s.natsURL)[oldKey]; !ok {
		t.Fatal("the old token key went before a token command")
	}
	code, out, _ = runCLI(t, noEnv, append([]string{"token", "list"}, nats...)...)
	if code != 0 || strings.Count(out, is.ID) != 1 {
		t.Fatalf("list after the grace:\n%s", out)
	}
	if _, ok := bucketValues(t, s.natsURL)[oldKey]; ok {
		t.Fatal("the next token command left the old token key")
	}

	// revoke ends a grace period at once.
	code, out, errOut = runCLI(t, noEnv, append([]string{"token", "rename", is.ID, "--name", "ci prod", "--grace", "1h", "--json"}, nats...)...)
	if code != 0 {
		t.Fatalf("rename --grace: %s", errOut)
	}
	var ren issued
	decodeOne(t, out, &ren)
	if c := post(t, s, "/v1/deploys/web", newToken); c != 202 {
		t.Fatalf("renamed-away token in its grace: %d", c)
	}
	if code, _, errOut := runCLI(t, noEnv, append([]string{"token", "revoke", is.ID}, nats...)...); code != 0 {
		t.Fatalf("revoke: %s", errOut)
	}
	refusedWithinSecond(t, s, "/v1/deploys/web", newToken)
	refusedWithinSecond(t, s, "/v1/deploys/web", ren.Token)
}
