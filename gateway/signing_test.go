package gateway_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/internal/hgtest"
	"github.com/hookgate/hookgate/secretring"
)

// githubSign signs body as GitHub does: sha256= and the hex HMAC.
func githubSign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// replies are every reply body the signed tests saw, scanned for secrets.
var replies []string

// sendSigned posts body to path with the given headers and returns status,
// body and the stored message's headers are read by the caller.
func sendSigned(t *testing.T, url string, body []byte, hdr map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(string(body)))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	replies = append(replies, string(raw))
	return resp.StatusCode, string(raw)
}

// A GitHub-style signed delivery, end to end: two gateways on one bucket and
// one key ring serve it from the bucket alone; its delivery id is its
// idempotency key; its event and way of authentication are stored; ping is
// answered 204; the form content type is decoded; a wrong signature is
// invalid_signature; and a revoke refuses its signatures on both gateways.
func TestSignedDeliveries(t *testing.T) {
	srv := hgtest.RunNATS(t)
	ringPath := filepath.Join(t.TempDir(), "secret-keys")
	ring, err := secretring.Create(ringPath)
	if err != nil {
		t.Fatal(err)
	}
	withRing := func(c *gateway.Config) { c.SecretKeys = ringPath }
	gw1 := hgtest.StartGateway(t, srv.ClientURL(), withRing)
	gw2 := hgtest.StartGateway(t, srv.ClientURL(), withRing)
	reg := hgtest.Registry(t, srv.ClientURL(), "")
	reg.Sealer = secretring.NewFile(ringPath, ring)
	is := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindDeploy, App: "web", Name: "github", Signing: true})
	if !strings.HasPrefix(is.SigningSecret, "whsec_") {
		t.Fatalf("signing secret %q", is.SigningSecret)
	}
	_, js := hgtest.Connect(t, srv.ClientURL())
	rec := hgtest.RawKV(t, srv.ClientURL(), "hookgate-tokens", auth.CredentialKey(is.ID))
	var sealed struct {
		Signing struct{ Sealed string } `json:"signing"`
	}
	if err := json.Unmarshal(rec, &sealed); err != nil || sealed.Signing.Sealed == "" {
		t.Fatalf("cred record %s: %v", rec, err)
	}

	body := []byte(`{"action":"created","deployment_status":{"state":"success"}}`)
	for i, gw := range []*hgtest.Gateway{gw1, gw2} {
		code, reply := sendSigned(t, gw.URL+"/v1/deploys/web?credential="+is.ID, body, map[string]string{
			"Content-Type": "application/json", "X-Hub-Signature-256": githubSign(is.SigningSecret, body),
			"X-GitHub-Event": "deployment_status", "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
		})
		if code != 202 {
			t.Fatalf("gateway %d: %d %s", i+1, code, reply)
		}
		if want := i == 1; !strings.Contains(reply, `"duplicate":`+map[bool]string{true: "true", false: "false"}[want]) {
			t.Fatalf("gateway %d: %s; the delivery id is the idempotency key, so the second is a duplicate", i+1, reply)
		}
	}
	stored := hgtest.LastMessage(t, js, "HOOKS", "hooks.acme.web.deploy")
	for k, v := range map[string]string{"Hook-Credential": is.ID, "Hook-Auth": "hub-signature", "Hook-Event": "deployment_status",
		"Hook-Idempotency-Key": "72d3162e-cc78-11e3-81ab-4c9367dc0958"} {
		if got := stored.Header.Get(k); got != v {
			t.Errorf("stored %s = %q, want %q", k, got, v)
		}
	}
	if string(stored.Data) != string(body) {
		t.Errorf("stored %q", stored.Data)
	}

	// ping: every check passes, nothing is stored.
	ping := []byte(`{"zen":"Keep it logically awesome.","hook_id":1}`)
	if code, reply := sendSigned(t, gw1.URL+"/v1/deploys/web?credential="+is.ID, ping, map[string]string{
		"Content-Type": "application/json", "X-Hub-Signature-256": githubSign(is.SigningSecret, ping), "X-GitHub-Event": "ping",
	}); code != 204 {
		t.Fatalf("ping: %d %s", code, reply)
	}

	// GitHub's form content type: verified over the raw body, stored decoded.
	form := []byte("payload=" + url.QueryEscape(`{"ref":"main"}`))
	if code, reply := sendSigned(t, gw1.URL+"/v1/deploys/web?credential="+is.ID, form, map[string]string{
		"Content-Type": "application/x-www-form-urlencoded", "X-Hub-Signature-256": githubSign(is.SigningSecret, form),
	}); code != 202 {
		t.Fatalf("form: %d %s", code, reply)
	}
	if m := hgtest.LastMessage(t, js, "HOOKS", "hooks.acme.web.deploy"); string(m.Data) != `{"ref":"main"}` {
		t.Fatalf("form stored %q, want the decoded payload", m.Data)
	}

	// A wrong signature, an unknown credential, no signature: one answer.
	for name, hdr := range map[string]map[string]string{
		"wrong secret":   {"X-Hub-Signature-256": githubSign("whsec_not-it", body)},
		"no signature":   {},
		"sha1 Bitbucket": {"X-Hub-Signature": "sha1=0123456789abcdef0123456789abcdef01234567"},
	} {
		hdr["Content-Type"] = "application/json"
		if code, reply := sendSigned(t, gw1.URL+"/v1/deploys/web?credential="+is.ID, body, hdr); code != 401 || !strings.Contains(reply, `"invalid_signature"`) {
			t.Errorf("%s: %d %s, want 401 invalid_signature", name, code, reply)
		}
	}
	if v := hgtest.MetricValue(t, gw1.MetricsURL, `hookgate_auth_failures_total{reason="signature"}`); v != 3 {
		t.Errorf("signature failures counted %v, want 3", v)
	}

	// Revoked: refused on both gateways, as fast as tokens.
	if err := reg.Revoke(t.Context(), is.ID); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for _, gw := range []*hgtest.Gateway{gw1, gw2} {
		hgtest.WaitFor(t, 2*time.Second, func() error {
			code, reply := sendSigned(t, gw.URL+"/v1/deploys/web?credential="+is.ID, body, map[string]string{
				"Content-Type": "application/json", "X-Hub-Signature-256": githubSign(is.SigningSecret, body),
			})
			if code != 401 {
				return &statusError{code, reply}
			}
			return nil
		})
	}
	t.Logf("revoked signing credential refused on both gateways within %s", time.Since(start).Round(time.Millisecond))
	// No secret, sealed or not, and no signature in a log line, a metric or
	// a reply.
	sig := strings.TrimPrefix(githubSign(is.SigningSecret, body), "sha256=")
	for _, gw := range []*hgtest.Gateway{gw1, gw2} {
		metrics := hgtest.Scrape(t, gw.MetricsURL)
		for where, text := range map[string]string{"log": gw.Logs.String(), "metrics": metrics, "replies": strings.Join(replies, "\n")} {
			for what, secret := range map[string]string{"signing secret": is.SigningSecret, "sealed secret": sealed.Signing.Sealed, "signature": sig} {
				if strings.Contains(text, secret) {
					t.Errorf("the gateway's %s hold the %s", where, what)
				}
			}
		}
	}
}

type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string { return http.StatusText(e.code) + ": " + e.body }

// GitLab's "Secret token" arrives in X-Gitlab-Token and is a token like any
// other; Authorization wins when both come; two X-Gitlab-Token are refused.
func TestGitlabTokenHeader(t *testing.T) {
	e := newEnv(t, nil)
	is := e.issue("acme", auth.KindDeploy, "web")
	body := `{"object_kind":"deployment","status":"success"}`
	code, out, _ := e.post("/v1/deploys/web", "", body, map[string]string{"X-Gitlab-Token": is.Token, "X-Gitlab-Event": "Deployment Hook"})
	if code != 202 {
		t.Fatalf("X-Gitlab-Token: %d %v", code, out)
	}
	m := e.getMsg(uint64(out["seq"].(float64)))
	if m.Header.Get("Hook-Auth") != "gitlab-token" || m.Header.Get("Hook-Event") != "Deployment Hook" || m.Header.Get("Hook-Credential") != is.ID {
		t.Fatalf("stored headers %v", m.Header)
	}
	code, out, _ = e.post("/v1/deploys/web", is.Token, body, map[string]string{"X-Gitlab-Token": "not-the-token-at-all"})
	if code != 202 {
		t.Fatalf("Authorization and a wrong X-Gitlab-Token: %d %v; Authorization is used", code, out)
	}
	if m := e.getMsg(uint64(out["seq"].(float64))); m.Header.Get("Hook-Auth") != "" {
		t.Fatalf("Hook-Auth %q for a request authenticated by Authorization", m.Header.Get("Hook-Auth"))
	}
	req, _ := http.NewRequest("POST", e.gw.URL+"/v1/deploys/web", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header["X-Gitlab-Token"] = []string{is.Token, is.Token}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(raw), `"invalid_token"`) {
		t.Fatalf("two X-Gitlab-Token: %d %s", resp.StatusCode, raw)
	}
}
