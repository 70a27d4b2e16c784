package gateway_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/internal/hgtest"
)

// env is one NATS server, one gateway and a registry on its bucket.
type env struct {
	t   *testing.T
	gw  *hgtest.Gateway
	reg *auth.Registry
	js  jetstream.JetStream
	nc  *nats.Conn
}

func newEnv(t *testing.T, configure func(*gateway.Config)) *env {
	t.Helper()
	srv := hgtest.RunNATS(t)
	gw := hgtest.StartGateway(t, srv.ClientURL(), configure)
	nc, js := hgtest.Connect(t, srv.ClientURL())
	return &env{t: t, gw: gw, reg: hgtest.Registry(t, srv.ClientURL(), ""), js: js, nc: nc}
}

// typoAt returns tok with the character at i changed (to another one: a
// fixed replacement equals the original once in 62 tokens).
func typoAt(tok string, i int) string {
	c := byte('x')
	if tok[i] == c {
		c = 'y'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

func (e *env) issue(org string, kind auth.Kind, app string) auth.Issued {
	return hgtest.Issue(e.t, e.reg, auth.IssueRequest{Org: org, Kind: kind, App: app, Name: org + " " + string(kind) + " " + app})
}

func (e *env) post(path, token string, body string, hdr map[string]string) (int, map[string]any, http.Header) {
	e.t.Helper()
	code, raw, h := hgtest.Post(e.t, e.gw.URL+path, token, []byte(body), hdr)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		e.t.Fatalf("%s: reply %d is not JSON: %q", path, code, raw)
	}
	return code, out, h
}

func (e *env) streamMsgs() uint64 {
	e.t.Helper()
	s, err := e.js.Stream(context.Background(), "HOOKS")
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Msgs
}

func (e *env) getMsg(seq uint64) *jetstream.RawStreamMsg {
	e.t.Helper()
	s, err := e.js.Stream(context.Background(), "HOOKS")
	if err != nil {
		e.t.Fatal(err)
	}
	m, err := s.GetMsg(context.Background(), seq)
	if err != nil {
		e.t.Fatalf("get msg %d: %v", seq, err)
	}
	return m
}

func TestWebhooksArriveByteForByte(t *testing.T) {
	e := newEnv(t, nil)
	hits := e.issue("acme", auth.KindHits, "")
	deploy := e.issue("acme", auth.KindDeploy, "web")

	tests := []struct {
		name, path, token, body, subject, kind string
		hdr                                    map[string]string
	}{
		{"hits object", "/v1/hits/web", hits.Token, "{\"status\":\"firing\", \"n\": 1.50}\n", "hooks.acme.web.hits", "hits", nil},
		{"hits batch", "/v1/hits/api", hits.Token, `[{"a":1},{"b":[2]}]`, "hooks.acme.api.hits", "hits", map[string]string{"Idempotency-Key": "batch-1"}},
		{"deploy", "/v1/deploys/web", deploy.Token, `{"version":"1.2.3"}`, "hooks.acme.web.deploy", "deploy", map[string]string{"Content-Type": "application/json; charset=utf-8"}},
		{"basic auth", "/v1/hits/web", "", `{"x":"y"}`, "hooks.acme.web.hits", "hits",
			map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("anyone:"+hits.Token))}},
		{"no content type", "/v1/hits/web", hits.Token, `{}`, "hooks.acme.web.hits", "hits", map[string]string{"Content-Type": ""}},
		{"basic auth, long user", "/v1/hits/web", "", `{}`, "hooks.acme.web.hits", "hits",
			map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("u", 600)+":"+hits.Token))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now().UTC()
			code, out, _ := e.post(tt.path, tt.token, tt.body, tt.hdr)
			if code != http.StatusAccepted {
				t.Fatalf("status %d: %v", code, out)
			}
			if len(out) != 3 || out["stream"] != "HOOKS" || out["duplicate"] != false || out["seq"] == nil {
				t.Fatalf("reply %v, want exactly stream, seq and duplicate", out)
			}
			m := e.getMsg(uint64(out["seq"].(float64)))
			if m.Subject != tt.subject {
				t.Errorf("subject %q, want %q", m.Subject, tt.subject)
			}
			if !bytes.Equal(m.Data, []byte(tt.body)) {
				t.Errorf("data %q, want %q", m.Data, tt.body)
			}
			credID := hits.ID
			if tt.kind == "deploy" {
				credID = deploy.ID
			}
			// The contract's headers and no others: the credential always,
			// the key's two only with a key.
			want := map[string]string{"Hook-Credential": credID}
			if k := tt.hdr["Idempotency-Key"]; k != "" {
				want["Hook-Idempotency-Key"] = k
				want["Nats-Msg-Id"] = m.Header.Get("Nats-Msg-Id")
				if !strings.HasPrefix(want["Nats-Msg-Id"], "k-") {
					t.Errorf("Nats-Msg-Id %q is not derived from the key", want["Nats-Msg-Id"])
				}
			}
			if len(m.Header) != len(want) {
				t.Errorf("headers %v, want exactly %v", m.Header, want)
			}
			for k, v := range want {
				if got := m.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			// The time received is the stream's own timestamp.
			if m.Time.Before(before.Add(-time.Second)) || m.Time.After(time.Now().Add(time.Second)) {
				t.Errorf("stored at %v, sent at %v", m.Time, before)
			}
		})
	}
}

func TestErrorTableAndNothingStored(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) { c.Ingest.MaxBody = 1024 })
	hits := e.issue("acme", auth.KindHits, "")
	deploy := e.issue("acme", auth.KindDeploy, "web")
	limited := e.issue("acme", auth.KindHits, "web")
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	unknown, _ := auth.NewToken(auth.KindHits)

	tests := []struct {
		name, method, path, token, body string
		hdr                             map[string]string
		code                            int
		errCode                         string
		header                          [2]string
	}{
		{"unknown path", "POST", "/v1/other/web", hits.Token, `{}`, nil, 404, "not_found", [2]string{}},
		{"no app", "POST", "/v1/hits/", hits.Token, `{}`, nil, 404, "not_found", [2]string{}},
		{"two segments", "POST", "/v1/hits/a/b", hits.Token, `{}`, nil, 404, "not_found", [2]string{}},
		{"trailing slash", "POST", "/v1/hits/web/", hits.Token, `{}`, nil, 404, "not_found", [2]string{}},
		{"root", "GET", "/", "", ``, nil, 404, "not_found", [2]string{}},
		{"GET", "GET", "/v1/hits/web", hits.Token, ``, nil, 405, "method_not_allowed", [2]string{"Allow", "POST"}},
		{"PUT", "PUT", "/v1/deploys/web", deploy.Token, `{}`, nil, 405, "method_not_allowed", [2]string{"Allow", "POST"}},
		{"no token", "POST", "/v1/hits/web", "", `{}`, nil, 401, "missing_token", [2]string{"WWW-Authenticate", `Bearer realm="hookgate"`}},
		{"empty bearer", "POST", "/v1/hits/web", "", `{}`, map[string]string{"Authorization": "Bearer "}, 401, "missing_token", [2]string{"WWW-Authenticate", `Bearer realm="hookgate"`}},
		{"empty basic password", "POST", "/v1/hits/web", "", `{}`, map[string]string{"Authorization": basic("u", "")}, 401, "missing_token", [2]string{}},
		{"other scheme", "POST", "/v1/hits/web", "", `{}`, map[string]string{"Authorization": "Token " + hits.Token}, 401, "invalid_token", [2]string{"WWW-Authenticate", `Bearer realm="hookgate"`}},
		{"typo token", "POST", "/v1/hits/web", typoAt(hits.Token, 10), `{}`, nil, 401, "invalid_token", [2]string{}},
		{"token and a no-break space", "POST", "/v1/hits/web", "", `{}`, map[string]string{"Authorization": "Bearer " + hits.Token + "\u00a0"}, 401, "invalid_token", [2]string{}},
		{"unknown token", "POST", "/v1/hits/web", unknown, `{}`, nil, 401, "invalid_token", [2]string{}},
		{"short token", "POST", "/v1/hits/web", "short", `{}`, nil, 401, "invalid_token", [2]string{}},
		{"invalid app", "POST", "/v1/hits/Web", hits.Token, `{}`, nil, 400, "invalid_app", [2]string{}},
		{"encoded app", "POST", "/v1/hits/w%2Eb", hits.Token, `{}`, nil, 400, "invalid_app", [2]string{}},
		{"deploy token on hits", "POST", "/v1/hits/web", deploy.Token, `{}`, nil, 403, "forbidden", [2]string{}},
		{"hits token on deploys", "POST", "/v1/deploys/web", hits.Token, `{}`, nil, 403, "forbidden", [2]string{}},
		{"deploy token of another app", "POST", "/v1/deploys/api", deploy.Token, `{}`, nil, 403, "forbidden", [2]string{}},
		{"hits token limited to another app", "POST", "/v1/hits/api", limited.Token, `{}`, nil, 403, "forbidden", [2]string{}},
		{"text body", "POST", "/v1/hits/web", hits.Token, `{}`, map[string]string{"Content-Type": "text/plain"}, 415, "unsupported_media_type", [2]string{}},
		{"empty key", "POST", "/v1/hits/web", hits.Token, `{}`, map[string]string{"Idempotency-Key": " "}, 400, "invalid_idempotency_key", [2]string{}},
		{"long key", "POST", "/v1/hits/web", hits.Token, `{}`, map[string]string{"Idempotency-Key": strings.Repeat("k", 201)}, 400, "invalid_idempotency_key", [2]string{}},
		{"key with space", "POST", "/v1/hits/web", hits.Token, `{}`, map[string]string{"Idempotency-Key": "a b"}, 400, "invalid_idempotency_key", [2]string{}},
		{"empty body", "POST", "/v1/hits/web", hits.Token, ``, nil, 400, "invalid_body", [2]string{}},
		{"not json", "POST", "/v1/hits/web", hits.Token, `{"a":`, nil, 400, "invalid_body", [2]string{}},
		{"not UTF-8", "POST", "/v1/hits/web", hits.Token, "{\"a\":\"\xff\xfe\"}", nil, 400, "invalid_body", [2]string{}},
		{"unpaired surrogate", "POST", "/v1/hits/web", hits.Token, "{\"a\":\"\xed\xa0\x80\"}", nil, 400, "invalid_body", [2]string{}},
		{"empty batch", "POST", "/v1/hits/web", hits.Token, `[]`, nil, 400, "invalid_body", [2]string{}},
		{"batch of deploys", "POST", "/v1/deploys/web", deploy.Token, `[{}]`, nil, 400, "invalid_body", [2]string{}},
		{"scalar", "POST", "/v1/hits/web", hits.Token, `42`, nil, 400, "invalid_body", [2]string{}},
		{"too large", "POST", "/v1/hits/web", hits.Token, `{"a":"` + strings.Repeat("x", 2000) + `"}`, nil, 413, "payload_too_large", [2]string{}},
	}
	before := e.streamMsgs()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, e.gw.URL+tt.path, strings.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/json")
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			for k, v := range tt.hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var out struct{ Error, Message string }
			if err := json.Unmarshal(raw, &out); err != nil {
				t.Fatalf("reply not JSON: %q", raw)
			}
			if resp.StatusCode != tt.code || out.Error != tt.errCode || out.Message == "" {
				t.Fatalf("got %d %q, want %d %q (%s)", resp.StatusCode, out.Error, tt.code, tt.errCode, raw)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if tt.header[0] != "" && resp.Header.Get(tt.header[0]) != tt.header[1] {
				t.Errorf("%s = %q, want %q", tt.header[0], resp.Header.Get(tt.header[0]), tt.header[1])
			}
			if strings.Contains(string(raw), hits.Token) || strings.Contains(string(raw), deploy.Token) {
				t.Errorf("reply holds a token")
			}
		})
	}
	// Duplicated Idempotency-Key headers need a raw request: net/http joins nothing, but be explicit.
	t.Run("key given twice", func(t *testing.T) {
		req, _ := http.NewRequest("POST", e.gw.URL+"/v1/hits/web", strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+hits.Token)
		req.Header.Add("Idempotency-Key", "a")
		req.Header.Add("Idempotency-Key", "b")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	if after := e.streamMsgs(); after != before {
		t.Fatalf("refused requests stored %d messages", after-before)
	}
}

// Two Authorization headers, even both valid: which one a proxy in front
// checked is anyone's guess, so the gateway takes neither.
func TestTwoAuthorizationHeadersAreRefused(t *testing.T) {
	e := newEnv(t, nil)
	hits := e.issue("acme", auth.KindHits, "")
	other := e.issue("acme", auth.KindHits, "")
	for _, pair := range [][2]string{{hits.Token, hits.Token}, {hits.Token, other.Token}, {hits.Token, "nonsense"}} {
		req, _ := http.NewRequest("POST", e.gw.URL+"/v1/hits/web", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header["Authorization"] = []string{"Bearer " + pair[0], "Bearer " + pair[1]}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || !strings.Contains(string(raw), `"invalid_token"`) {
			t.Fatalf("two Authorization headers: %d %s, want 401 invalid_token", resp.StatusCode, raw)
		}
	}
	if n := e.streamMsgs(); n != 0 {
		t.Fatalf("stored %d messages", n)
	}
}

func TestIdempotencyIsScopedToOrganization(t *testing.T) {
	e := newEnv(t, nil)
	acme := e.issue("acme", auth.KindHits, "")
	other := e.issue("globex", auth.KindHits, "")
	key := map[string]string{"Idempotency-Key": "alert-42"}

	_, first, _ := e.post("/v1/hits/web", acme.Token, `{"n":1}`, key)
	_, again, _ := e.post("/v1/hits/web", acme.Token, `{"n":2}`, key)
	if first["duplicate"] != false || again["duplicate"] != true || again["seq"] != first["seq"] {
		t.Fatalf("first %v, repeat %v", first, again)
	}
	if m := e.getMsg(uint64(first["seq"].(float64))); string(m.Data) != `{"n":1}` {
		t.Fatalf("stored %q: the duplicate's body must be discarded", m.Data)
	}
	_, otherOrg, _ := e.post("/v1/hits/web", other.Token, `{"n":3}`, key)
	_, otherApp, _ := e.post("/v1/hits/api", acme.Token, `{"n":4}`, key)
	for _, r := range []map[string]any{otherOrg, otherApp} {
		if r["duplicate"] != false || r["seq"] == first["seq"] {
			t.Fatalf("same key in another scope was a duplicate: %v", r)
		}
	}
	if n := e.streamMsgs(); n != 3 {
		t.Fatalf("stream holds %d messages, want 3", n)
	}
}

func TestCredentialFromAnotherWriterAndExpiry(t *testing.T) {
	e := newEnv(t, nil)
	kv, err := e.js.KeyValue(context.Background(), "hookgate-tokens")
	if err != nil {
		t.Fatal(err)
	}
	token := "platform-issued-token-0123456789"
	h := auth.HashToken([]byte(token))
	rec := `{"id":"plat-1","org":"acme","app":"web","kind":"deploy","name":"from the platform","version":1,"created_at":"2026-01-01T00:00:00Z","expires_at":null}`
	if _, err := kv.Put(context.Background(), auth.TokenKey(h), []byte(rec)); err != nil {
		t.Fatal(err)
	}
	hgtest.WaitFor(t, 2*time.Second, func() error {
		if code, _, _ := e.post("/v1/deploys/web", token, `{}`, nil); code != 202 {
			return fmt.Errorf("status %d", code)
		}
		return nil
	})
	if err := kv.Delete(context.Background(), auth.TokenKey(h)); err != nil {
		t.Fatal(err)
	}
	refusedWithin(t, e, "/v1/deploys/web", token, time.Second)

	// A platform's own id format and no version: valid, and the id is the
	// message's Hook-Credential.
	token4 := "platform-issued-token-own-id-001"
	rec4 := `{"id":"Cred-4F2A_7","org":"acme","app":"","kind":"hits","name":"n"}`
	if _, err := kv.Put(context.Background(), auth.TokenKey(auth.HashToken([]byte(token4))), []byte(rec4)); err != nil {
		t.Fatal(err)
	}
	var seq float64
	hgtest.WaitFor(t, 2*time.Second, func() error {
		code, out, _ := e.post("/v1/hits/web", token4, `{}`, nil)
		if code != 202 {
			return fmt.Errorf("status %d", code)
		}
		seq, _ = out["seq"].(float64)
		return nil
	})
	if got := e.getMsg(uint64(seq)).Header.Get("Hook-Credential"); got != "Cred-4F2A_7" {
		t.Fatalf("Hook-Credential %q", got)
	}

	// Expiry: a credential that expires in a moment stops working then.
	token2 := "platform-issued-token-expiring-1"
	exp := time.Now().Add(1500 * time.Millisecond).UTC().Format(time.RFC3339Nano)
	rec2 := fmt.Sprintf(`{"id":"plat-2","org":"acme","app":"","kind":"hits","name":"n","version":1,"created_at":"2026-01-01T00:00:00Z","expires_at":%q}`, exp)
	if _, err := kv.Put(context.Background(), auth.TokenKey(auth.HashToken([]byte(token2))), []byte(rec2)); err != nil {
		t.Fatal(err)
	}
	hgtest.WaitFor(t, time.Second, func() error {
		if code, _, _ := e.post("/v1/hits/web", token2, `{}`, nil); code != 202 {
			return fmt.Errorf("status %d", code)
		}
		return nil
	})
	refusedWithin(t, e, "/v1/hits/web", token2, 3*time.Second)

	// Garbage written by a platform is counted and makes nothing valid.
	token3 := "platform-issued-token-garbage-01"
	if _, err := kv.Put(context.Background(), auth.TokenKey(auth.HashToken([]byte(token3))), []byte(`{"org":"ACME.>"}`)); err != nil {
		t.Fatal(err)
	}
	hgtest.WaitFor(t, 2*time.Second, func() error {
		return metricAtLeast(e.gw.MetricsURL, `hookgate_token_events_total{op="invalid"}`, 1)
	})
	if code, _, _ := e.post("/v1/hits/web", token3, `{}`, nil); code != 401 {
		t.Fatalf("garbage credential: status %d", code)
	}
}

func refusedWithin(t *testing.T, e *env, path, token string, d time.Duration) {
	t.Helper()
	start := time.Now()
	hgtest.WaitFor(t, d, func() error {
		code, out, _ := e.post(path, token, `{}`, nil)
		if code != 401 || out["error"] != "invalid_token" {
			return fmt.Errorf("still %d %v", code, out)
		}
		return nil
	})
	t.Logf("%s refused %s after the change", path, time.Since(start).Round(time.Millisecond))
}

func metricAtLeast(metricsURL, series string, want float64) error {
	v, found, err := hgtest.Metric(metricsURL, series)
	switch {
	case err != nil:
		return err
	case !found:
		return fmt.Errorf("%s not found", series)
	case v < want:
		return fmt.Errorf("%s = %v, want >= %v", series, v, want)
	}
	return nil
}

func TestRegistryRotateRenameRevoke(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	is := e.issue("acme", auth.KindDeploy, "web")
	if code, _, _ := e.post("/v1/deploys/web", is.Token, `{}`, nil); code != 202 {
		t.Fatalf("issued token: %d", code)
	}
	rot, err := e.reg.Rotate(ctx, is.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rot.Version != 2 || rot.Token == is.Token {
		t.Fatalf("rotate: %+v", rot.Credential)
	}
	refusedWithin(t, e, "/v1/deploys/web", is.Token, time.Second)
	if code, _, _ := e.post("/v1/deploys/web", rot.Token, `{}`, nil); code != 202 {
		t.Fatalf("rotated token: %d", code)
	}
	ren, err := e.reg.Rename(ctx, is.ID, "renamed")
	if err != nil {
		t.Fatal(err)
	}
	if ren.Version != 3 || ren.Name != "renamed" {
		t.Fatalf("rename: %+v", ren.Credential)
	}
	refusedWithin(t, e, "/v1/deploys/web", rot.Token, time.Second)
	if code, _, _ := e.post("/v1/deploys/web", ren.Token, `{}`, nil); code != 202 {
		t.Fatalf("renamed token: %d", code)
	}
	if err := e.reg.Revoke(ctx, is.ID); err != nil {
		t.Fatal(err)
	}
	refusedWithin(t, e, "/v1/deploys/web", ren.Token, time.Second)
	if _, err := e.reg.Rotate(ctx, is.ID); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("rotate after revoke: %v", err)
	}
}

func TestNoTokenInLogsOrMetrics(t *testing.T) {
	e := newEnv(t, nil)
	valid := e.issue("acme", auth.KindHits, "")
	revoked := e.issue("acme", auth.KindDeploy, "web")
	unknown, _ := auth.NewToken(auth.KindHits)
	typo := typoAt(valid.Token, 20)
	platform := "some-platform-format-token-zzz"
	e.post("/v1/hits/web", valid.Token, `{}`, nil)
	e.post("/v1/deploys/web", valid.Token, `{}`, nil)
	e.post("/v1/deploys/web", revoked.Token, `{}`, nil)
	if err := e.reg.Revoke(context.Background(), revoked.ID); err != nil {
		t.Fatal(err)
	}
	refusedWithin(t, e, "/v1/deploys/web", revoked.Token, time.Second)
	var replies strings.Builder
	record := func(code int, out map[string]any, h http.Header) {
		fmt.Fprintf(&replies, "%d %v %v\n", code, out, h)
	}
	record(e.post("/v1/hits/web", valid.Token, `{}`, nil))
	record(e.post("/v1/deploys/web", revoked.Token, `{}`, nil))
	for _, tok := range []string{unknown, typo, platform} {
		record(e.post("/v1/hits/web", tok, `{}`, nil))
		record(e.post("/v1/hits/web", "", `{}`, map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("u:"+tok))}))
	}
	resp, err := http.Get(e.gw.MetricsURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metricsText, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	logs := e.gw.Logs.String()
	if !strings.Contains(logs, "request refused") {
		t.Fatalf("expected refusal log lines, got:\n%s", logs)
	}
	for _, tok := range []string{valid.Token, revoked.Token, unknown, typo, platform} {
		for where, text := range map[string]string{"log": logs, "metrics": string(metricsText), "replies": replies.String()} {
			if strings.Contains(text, tok) {
				t.Errorf("token found in %s", where)
			}
			if strings.Contains(text, auth.HashToken([]byte(tok)).String()) {
				t.Errorf("token hash found in %s", where)
			}
		}
	}
}

func TestEmbeddedKeepsStateAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	addr := hgtest.Addr(t) // the restart listens where the first start did, as an operator's would
	start := func() *hgtest.Gateway {
		return hgtest.StartGateway(t, "", func(c *gateway.Config) {
			c.DataDir = dir
			c.EmbeddedListen = addr
		})
	}
	gw := start()
	reg := hgtest.Registry(t, gw.NATSURL(), "")
	is := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "n"})
	code, body, _ := hgtest.Post(t, gw.URL+"/v1/hits/web", is.Token, []byte(`{"kept":true}`), nil)
	if code != 202 {
		t.Fatalf("post: %d %s", code, body)
	}
	gw.Stop()

	gw2 := start()
	code, body, _ = hgtest.Post(t, gw2.URL+"/v1/hits/web", is.Token, []byte(`{"after":"restart"}`), nil)
	if code != 202 {
		t.Fatalf("token lost across restart: %d %s", code, body)
	}
	var ack struct{ Seq uint64 }
	json.Unmarshal(body, &ack)
	if ack.Seq != 2 {
		t.Fatalf("seq %d after restart, want 2: the first message was lost", ack.Seq)
	}
	_, js := hgtest.Connect(t, gw2.NATSURL())
	s, err := js.Stream(context.Background(), "HOOKS")
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(context.Background(), 1)
	if err != nil || string(m.Data) != `{"kept":true}` {
		t.Fatalf("first message after restart: %v %v", m, err)
	}
}

// A --max-body above the embedded server's 1 MiB default raises its
// max_payload instead of being lowered to fit it.
func TestEmbeddedTakesBodiesOverOneMiB(t *testing.T) {
	gw := hgtest.StartGateway(t, "", func(c *gateway.Config) { c.Ingest.MaxBody = 2_000_000 })
	reg := hgtest.Registry(t, gw.NATSURL(), "")
	is := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "big"})
	body := []byte(`{"pad":"` + strings.Repeat("x", 1_500_000) + `"}`)
	if code, reply, _ := hgtest.Post(t, gw.URL+"/v1/hits/web", is.Token, body, nil); code != 202 {
		t.Fatalf("1.5 MB body under --max-body 2000000: %d %s", code, reply)
	}
	if strings.Contains(gw.Logs.String(), "--max-body lowered") {
		t.Fatalf("--max-body was lowered: %s", gw.Logs.String())
	}
}

func TestReadyzAndHealthz(t *testing.T) {
	e := newEnv(t, nil)
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200} {
		resp, err := http.Get(e.gw.MetricsURL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s = %d", path, resp.StatusCode)
		}
	}
}

// /readyz follows the stream and the bucket after startup: deleting one makes
// the gateway not ready until it exists again.
func TestReadyzFollowsStreamAndBucket(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: four turns of the gateway's 2s stream and bucket check")
	}
	srv := hgtest.RunNATS(t)
	gw := hgtest.StartGateway(t, srv.ClientURL(), nil)
	_, js := hgtest.Connect(t, srv.ClientURL())
	ctx := context.Background()
	s, err := js.Stream(ctx, "HOOKS")
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if err := js.DeleteStream(ctx, "HOOKS"); err != nil {
		t.Fatal(err)
	}
	gw.WaitNotReady(t, 10*time.Second, "deleting the stream")
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	hgtest.WaitFor(t, 10*time.Second, gw.ReadyErr)

	kv, err := js.KeyValue(ctx, "hookgate-tokens")
	if err != nil {
		t.Fatal(err)
	}
	kvStatus, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteKeyValue(ctx, "hookgate-tokens"); err != nil {
		t.Fatal(err)
	}
	gw.WaitNotReady(t, 10*time.Second, "deleting the bucket")
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "hookgate-tokens", History: uint8(kvStatus.History())}); err != nil {
		t.Fatal(err)
	}
	hgtest.WaitFor(t, 10*time.Second, gw.ReadyErr)
}

func TestExistingStreamIsLeftAlone(t *testing.T) {
	srv := hgtest.RunNATS(t)
	_, js := hgtest.Connect(t, srv.ClientURL())
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "HOOKS", Subjects: []string{"hooks.>"}, Storage: jetstream.MemoryStorage,
		MaxAge: time.Hour, MaxMsgs: 12345, Duplicates: 10 * time.Second,
	}); err != nil {
		t.Fatal(err)
	}
	gw := hgtest.StartGateway(t, srv.ClientURL(), func(c *gateway.Config) { c.DedupWindow = 5 * time.Minute })
	reg := hgtest.Registry(t, srv.ClientURL(), "")
	is := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "n"})
	if code, body, _ := hgtest.Post(t, gw.URL+"/v1/hits/web", is.Token, []byte(`{}`), nil); code != 202 {
		t.Fatalf("post: %d %s", code, body)
	}
	s, err := js.Stream(ctx, "HOOKS")
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if cfg.Storage != jetstream.MemoryStorage || cfg.MaxAge != time.Hour || cfg.MaxMsgs != 12345 || cfg.Duplicates != 10*time.Second {
		t.Fatalf("serve changed the operator's stream: %+v", cfg)
	}
}

// An existing stream keeps the operator's duplicate window, and the gateway's
// re-sends follow that window, not --dedup-window: a window too short for
// --publish-timeout is said in the log (the publisher's own tests show what
// it changes).
func TestResendsFollowTheStreamsDuplicateWindow(t *testing.T) {
	srv := hgtest.RunNATS(t)
	_, js := hgtest.Connect(t, srv.ClientURL())
	_, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: "HOOKS", Subjects: []string{"hooks.>"}, Duplicates: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	gw := hgtest.StartGateway(t, srv.ClientURL(), nil) // --dedup-window 2m, --publish-timeout 5s
	hgtest.WaitFor(t, 10*time.Second, func() error {
		logs := gw.Logs.String()
		if !strings.Contains(logs, "duplicate window is short") || !strings.Contains(logs, `"duplicate_window":2000000000`) {
			return errors.New("no warning naming the stream's 2s window")
		}
		return nil
	})
	reg := hgtest.Registry(t, srv.ClientURL(), "")
	is := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "w"})
	if code, out, _ := hgtest.Post(t, gw.URL+"/v1/hits/web", is.Token, []byte(`{}`), nil); code != 202 {
		t.Fatalf("webhook: %d %s", code, out)
	}
}

// A start that fails returns its error (no panic) at once and closes what it
// opened: the embedded server and the listeners, so that the same data dir
// and ports serve the next start.
func TestFailedStartClosesWhatItOpened(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	// Start takes these as addresses (it is their release that is checked),
	// and the gateway after each case binds them again: ports that no
	// outgoing connection can take meanwhile (see hgtest.Port).
	webhook, metricsAddr, embedded := hgtest.Addr(t), hgtest.Addr(t), hgtest.Addr(t)
	base := func(c *gateway.Config) {
		c.Listener, c.MetricsLn = nil, nil
		c.Listen, c.MetricsListen, c.EmbeddedListen = webhook, metricsAddr, embedded
		c.DataDir = dir
	}
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, want string
		change     func(*gateway.Config)
	}{
		{"webhook port in use", "webhook listener", func(c *gateway.Config) { c.Listen = busy.Addr().String() }},
		{"metrics port in use", "metrics listener", func(c *gateway.Config) { c.MetricsListen = busy.Addr().String() }},
		{"embedded NATS port in use", "embedded server on " + busy.Addr().String(), func(c *gateway.Config) { c.EmbeddedListen = busy.Addr().String() }},
		// Fails once the embedded server is up: it must be shut down.
		{"missing NATS nkey file", "no.seed", func(c *gateway.Config) { c.NATS.NKey = filepath.Join(dir, "no.seed") }},
		{"data dir is a file", "JetStream", func(c *gateway.Config) { c.DataDir = notADir }},
		{"missing certificate", "certificate", func(c *gateway.Config) {
			c.TLSCert, c.TLSKey = filepath.Join(dir, "no.crt"), filepath.Join(dir, "no.key")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := gateway.DefaultConfig()
			cfg.Logger = slog.New(slog.DiscardHandler)
			base(&cfg)
			tt.change(&cfg)
			began := time.Now()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			g, err := gateway.Start(ctx, cfg)
			if err == nil {
				cancel()
				g.Wait()
				t.Fatal("started")
			}
			if g != nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Start = %v, %v; want nil and an error naming %q", g, err, tt.want)
			}
			// The embedded server's readiness wait is 30 s: a failure it
			// reports must not wait for it.
			if took := time.Since(began); took > 10*time.Second {
				t.Fatalf("the failure took %v", took)
			}
			// The same ports, embedded port included, and data dir start a
			// gateway now.
			gw := hgtest.StartGateway(t, "", func(c *gateway.Config) { base(c) })
			gw.Stop()
		})
	}
}
