package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	svix "github.com/svix/svix-webhooks/go"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/internal/hgtest"
	"github.com/hookgate/hookgate/secretring"
	"github.com/hookgate/hookgate/signature"
)

const openAPIFile = "../api/openapi.yaml"

// loadOpenAPI loads and validates api/openapi.yaml as OpenAPI 3.1.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	loader.IsExternalRefsAllowed = false
	doc, err := loader.LoadFromFile(openAPIFile)
	if err != nil {
		t.Fatalf("load %s: %v", openAPIFile, err)
	}
	if !doc.IsOpenAPI31OrLater() || doc.OpenAPI != "3.1.0" {
		t.Fatalf("%s: openapi %q, want 3.1.0 (validated with JSON Schema 2020-12)", openAPIFile, doc.OpenAPI)
	}
	// Validate turns on JSON Schema 2020-12 itself for a 3.1 document.
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("validate %s: %v", openAPIFile, err)
	}
	return doc
}

// authenticate stands in for the gateway's credential check, which the
// document cannot express: it accepts any credentials sent in the scheme's
// form, and refuses a request that does not use the scheme at all, as the
// document's security requirement (bearer, basic, gitlabToken or signed)
// says. A signed request is the credential query parameter together with a
// signature header.
func authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	req := in.RequestValidationInput.Request
	s := in.SecurityScheme
	switch {
	case s.Type == "http":
		scheme := strings.ToLower(s.Scheme)
		h := req.Header.Get("Authorization")
		if len(h) <= len(scheme)+1 || !strings.EqualFold(h[:len(scheme)+1], scheme+" ") {
			return fmt.Errorf("no %s credentials", scheme)
		}
		return nil
	case s.Type == "apiKey" && s.In == "header":
		if req.Header.Get(s.Name) == "" {
			return fmt.Errorf("no %s header", s.Name)
		}
		return nil
	case s.Type == "apiKey" && s.In == "query":
		if !req.URL.Query().Has(s.Name) {
			return fmt.Errorf("no %s query parameter", s.Name)
		}
		for _, h := range signatureHeaders() {
			if req.Header.Get(h) != "" {
				return nil
			}
		}
		return errors.New("no signature header")
	}
	return fmt.Errorf("security scheme %s %s: unknown to this test", s.Type, s.Scheme)
}

// signatureHeaders are the headers that carry a signature: each row's of the
// signature table, and Svix's name for the Standard Webhooks one.
func signatureHeaders() []string {
	var out []string
	for _, s := range signature.Schemes() {
		out = append(out, s.Header())
	}
	return append(out, "svix-signature")
}

// The contract's lists of sender ids and event headers, and the other header
// that presents a credential.
var (
	senderIDHeaders = []string{"X-GitHub-Delivery", "webhook-id", "svix-id"}
	eventHeaders    = []string{"X-GitHub-Event", "X-Gitlab-Event", "X-Gitea-Event", "X-Event-Key", "Circleci-Event-Type", "Sentry-Hook-Resource"}
	otherHeaders    = []string{"X-Gitlab-Token", "webhook-timestamp", "svix-timestamp"}
)

// hexHMAC is the hex HMAC-SHA256 of msg keyed with key.
func hexHMAC(key string, msg []byte) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write(msg)
	return hex.EncodeToString(m.Sum(nil))
}

// standardWebhooksSign signs as the Standard Webhooks spec says: v1, and the
// base64 HMAC of id.timestamp.body, keyed with the decoded whsec_ secret.
func standardWebhooksSign(t *testing.T, secret, id, ts string, body []byte) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatalf("signing secret %q: %v", secret, err)
	}
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s.%s.", id, ts)
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// svixSign signs as Svix's senders do, with Svix's own Go library.
func svixSign(t *testing.T, secret, id string, ts time.Time, body []byte) string {
	t.Helper()
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		t.Fatalf("signing secret %q: %v", secret, err)
	}
	sig, err := wh.Sign(id, ts, body)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// apiCase is one real request to a gateway and what both the gateway and the
// document should say about it.
type apiCase struct {
	name     string
	gw       *hgtest.Gateway
	method   string
	path     string
	token    string // bearer token; empty: see hdr
	hdr      map[string]string
	body     []byte
	prime    func(t *testing.T) // runs before the request
	status   int
	code     string // error code; empty for a 202 or 204
	reqValid bool   // whether the document accepts the request itself
	dup      bool   // for a 202: the reply's duplicate
}

func (c *apiCase) request(t *testing.T) *http.Request {
	t.Helper()
	req, err := http.NewRequest(c.method, c.gw.URL+c.path, bytes.NewReader(c.body))
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range c.hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	return req
}

// TestOpenAPIMatchesGateway validates api/openapi.yaml, then sends real
// requests to running gateways and validates each request and each actual
// reply against the document.
func TestOpenAPIMatchesGateway(t *testing.T) {
	doc := loadOpenAPI(t)

	// plain has a key ring, for signed requests.
	ringPath := filepath.Join(t.TempDir(), "secret-keys")
	ring, err := secretring.Create(ringPath)
	if err != nil {
		t.Fatal(err)
	}
	plain := hgtest.StartGateway(t, "", func(cfg *gateway.Config) { cfg.SecretKeys = ringPath })
	// tight has a small --max-body, a per-credential rate of one request
	// per 100s (burst 1) and a 1s --read-timeout, for 413, 429 and 408.
	tight := hgtest.StartGateway(t, "", func(cfg *gateway.Config) {
		cfg.Ingest.MaxBody = 1024
		cfg.Ingest.RateLimit = 0.01
		cfg.Ingest.RateBurst = 1
		cfg.Server.ReadTimeout = time.Second
	})
	reg := hgtest.Registry(t, plain.NATSURL(), "")
	hits := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "openapi hits"})
	deploy := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindDeploy, App: "web", Name: "openapi deploy"})
	reg.Sealer = secretring.NewFile(ringPath, ring)
	signedDeploy := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindDeploy, App: "api", Name: "openapi github", Signing: true})
	signedHits := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "openapi standard webhooks", Signing: true})
	tightReg := hgtest.Registry(t, tight.NATSURL(), "")
	tightHits := hgtest.Issue(t, tightReg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "openapi 413"})
	limited := hgtest.Issue(t, tightReg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "openapi 429"})

	// The document's server is a variable; route to the test gateways.
	doc.Servers = openapi3.Servers{{URL: plain.URL}, {URL: tight.URL}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	opts := &openapi3filter.Options{AuthenticationFunc: authenticate, IncludeResponseStatus: true}

	obj := []byte(`{"check":"disk","status":"failure","value":97.5}`)
	basicDeploy := "Basic " + base64.StdEncoding.EncodeToString([]byte("ci:"+deploy.Token))

	// Signed requests, as the senders sign them.
	ghPath := "/v1/deploys/api?credential=" + url.QueryEscape(signedDeploy.ID)
	ghBody := []byte(`{"action":"created","deployment_status":{"state":"success","environment":"production"}}`)
	ghSig := "sha256=" + hexHMAC(signedDeploy.SigningSecret, ghBody)
	ping := []byte(`{"zen":"Design for failure.","hook_id":12345678}`)
	form := []byte("payload=" + url.QueryEscape(`{"ref":"main","after":"9f2c1e0"}`))
	swPath := "/v1/hits/web?credential=" + url.QueryEscape(signedHits.ID)
	swID, swTS := "msg_2lLq0ZQmBnWjfL5H1N0sIq7Rk1D", strconv.FormatInt(time.Now().Unix(), 10)
	svixID, svixTS := "msg_2lLq0ZQmBnWjfL5H1N0sIq7Rk1E", time.Now()
	cases := []apiCase{
		{name: "202 hits object", gw: plain, method: http.MethodPost, path: "/v1/hits/web", token: hits.Token, body: obj,
			status: 202, reqValid: true},
		{name: "202 hits batch", gw: plain, method: http.MethodPost, path: "/v1/hits/web", token: hits.Token,
			hdr: map[string]string{"Idempotency-Key": "batch-1"}, body: []byte(`[{"check":"disk"},{"check":"cpu"}]`),
			status: 202, reqValid: true},
		{name: "202 hits batch repeated", gw: plain, method: http.MethodPost, path: "/v1/hits/web", token: hits.Token,
			hdr: map[string]string{"Idempotency-Key": "batch-1"}, body: []byte(`[{"check":"disk"},{"check":"cpu"}]`),
			status: 202, reqValid: true, dup: true},
		{name: "202 deploy basic", gw: plain, method: http.MethodPost, path: "/v1/deploys/web",
			hdr:  map[string]string{"Authorization": basicDeploy, "Content-Type": "application/json; charset=utf-8"},
			body: []byte(`{"version":"1.4.2","commit":"9f2c1e0"}`), status: 202, reqValid: true},
		{name: "401 missing", gw: plain, method: http.MethodPost, path: "/v1/hits/web", body: obj,
			status: 401, code: "missing_token", reqValid: false},
		{name: "401 invalid", gw: plain, method: http.MethodPost, path: "/v1/hits/web", token: "platform-token-0123456789abcdef",
			body: obj, status: 401, code: "invalid_token", reqValid: true},
		{name: "403 wrong kind", gw: plain, method: http.MethodPost, path: "/v1/hits/web", token: deploy.Token, body: obj,
			status: 403, code: "forbidden", reqValid: true},
		{name: "400 invalid_app", gw: plain, method: http.MethodPost, path: "/v1/hits/Web.App", token: hits.Token, body: obj,
			status: 400, code: "invalid_app", reqValid: false},
		{name: "415", gw: plain, method: http.MethodPost, path: "/v1/hits/web", token: hits.Token,
			hdr: map[string]string{"Content-Type": "text/plain"}, body: obj,
			status: 415, code: "unsupported_media_type", reqValid: false},
		{name: "400 invalid_body empty batch", gw: plain, method: http.MethodPost, path: "/v1/hits/web", token: hits.Token,
			body: []byte(`[]`), status: 400, code: "invalid_body", reqValid: false},
		{name: "400 invalid_body deploy array", gw: plain, method: http.MethodPost, path: "/v1/deploys/web", token: deploy.Token,
			body: []byte(`[{"version":"1"}]`), status: 400, code: "invalid_body", reqValid: false},
		{name: "400 invalid_idempotency_key", gw: plain, method: http.MethodPost, path: "/v1/hits/web", token: hits.Token,
			hdr: map[string]string{"Idempotency-Key": strings.Repeat("k", 201)}, body: obj,
			status: 400, code: "invalid_idempotency_key", reqValid: false},
		{name: "405", gw: plain, method: http.MethodGet, path: "/v1/hits/web", token: hits.Token,
			status: 405, code: "method_not_allowed", reqValid: false},
		{name: "413", gw: tight, method: http.MethodPost, path: "/v1/hits/web", token: tightHits.Token,
			body:   []byte(`{"pad":"` + strings.Repeat("x", 4096) + `"}`),
			status: 413, code: "payload_too_large", reqValid: true},
		{name: "429", gw: tight, method: http.MethodPost, path: "/v1/hits/web", token: limited.Token, body: obj,
			prime: func(t *testing.T) {
				code, reply, _ := hgtest.Post(t, tight.URL+"/v1/hits/web", limited.Token, obj, nil)
				if code != http.StatusAccepted {
					t.Fatalf("first request of the limited credential: %d %s", code, reply)
				}
			},
			status: 429, code: "rate_limited", reqValid: true},
		{name: "202 deploy X-Gitlab-Token", gw: plain, method: http.MethodPost, path: "/v1/deploys/web",
			hdr:  map[string]string{"X-Gitlab-Token": deploy.Token, "X-Gitlab-Event": "Deployment Hook"},
			body: []byte(`{"object_kind":"deployment","status":"success"}`), status: 202, reqValid: true},
		{name: "202 deploy signed hub-signature", gw: plain, method: http.MethodPost, path: ghPath,
			hdr: map[string]string{"X-Hub-Signature-256": ghSig, "X-GitHub-Event": "deployment_status",
				"X-GitHub-Delivery": "0b2c6a30-1d5e-11f0-8a3e-2f1c0e5b7a11"},
			body: ghBody, status: 202, reqValid: true},
		{name: "202 deploy signed redelivery", gw: plain, method: http.MethodPost, path: ghPath,
			hdr: map[string]string{"X-Hub-Signature-256": ghSig, "X-GitHub-Event": "deployment_status",
				"X-GitHub-Delivery": "0b2c6a30-1d5e-11f0-8a3e-2f1c0e5b7a11"},
			body: ghBody, status: 202, reqValid: true, dup: true},
		{name: "204 ping", gw: plain, method: http.MethodPost, path: ghPath,
			hdr: map[string]string{"X-Hub-Signature-256": "sha256=" + hexHMAC(signedDeploy.SigningSecret, ping),
				"X-GitHub-Event": "ping", "X-GitHub-Delivery": "5f1e9a40-1d5e-11f0-9b1a-7c2d3e4f5a60"},
			body: ping, status: 204, reqValid: true},
		{name: "202 deploy signed form", gw: plain, method: http.MethodPost, path: ghPath,
			hdr: map[string]string{"Content-Type": "application/x-www-form-urlencoded",
				"X-Hub-Signature-256": "sha256=" + hexHMAC(signedDeploy.SigningSecret, form), "X-GitHub-Event": "push"},
			body: form, status: 202, reqValid: true},
		{name: "202 hits signed standard-webhooks", gw: plain, method: http.MethodPost, path: swPath,
			hdr: map[string]string{"webhook-id": swID, "webhook-timestamp": swTS,
				"webhook-signature": standardWebhooksSign(t, signedHits.SigningSecret, swID, swTS, obj)},
			body: obj, status: 202, reqValid: true},
		{name: "202 hits signed by Svix's library", gw: plain, method: http.MethodPost, path: swPath,
			hdr: map[string]string{"svix-id": svixID, "svix-timestamp": strconv.FormatInt(svixTS.Unix(), 10),
				"svix-signature": svixSign(t, signedHits.SigningSecret, svixID, svixTS, obj)},
			body: obj, status: 202, reqValid: true},
		{name: "401 invalid_signature wrong", gw: plain, method: http.MethodPost, path: ghPath,
			hdr:  map[string]string{"X-Hub-Signature-256": "sha256=" + hexHMAC("whsec_not-the-secret", ghBody)},
			body: ghBody, status: 401, code: "invalid_signature", reqValid: true},
		{name: "401 invalid_signature no signature", gw: plain, method: http.MethodPost, path: ghPath,
			body: ghBody, status: 401, code: "invalid_signature", reqValid: false},
	}
	covered := map[int]bool{}
	for _, c := range cases {
		covered[c.status] = true
	}
	for _, s := range []int{202, 204, 400, 401, 403, 405, 413, 415, 429} {
		if !covered[s] {
			t.Errorf("no case for a %d", s)
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.prime != nil {
				c.prime(t)
			}
			resp, err := httpClient.Do(c.request(t))
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("read reply: %v", err)
			}
			t.Logf("%s %s -> %d %v %s", c.method, c.path, resp.StatusCode, resp.Header, body)

			// What the gateway said.
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, body)
			}
			if c.status == http.StatusNoContent {
				if len(body) != 0 {
					t.Errorf("a 204 with a body: %s", body)
				}
			} else {
				var reply struct {
					Error     string `json:"error"`
					Duplicate bool   `json:"duplicate"`
				}
				if err := json.Unmarshal(body, &reply); err != nil {
					t.Fatalf("reply is not JSON: %v", err)
				}
				if reply.Error != c.code || (c.status == 202 && reply.Duplicate != c.dup) {
					t.Errorf("reply %s, want error %q duplicate %v", body, c.code, c.dup)
				}
			}

			// What the document says about the request.
			req := c.request(t)
			route, params, err := router.FindRoute(req)
			if c.method != http.MethodPost {
				// The document has no operation for other methods; their
				// 405 reply is described on the path's POST operation.
				if !errors.Is(err, routers.ErrMethodNotAllowed) {
					t.Fatalf("find route %s %s: %v, want method not allowed", c.method, c.path, err)
				}
				post := c.request(t)
				post.Method = http.MethodPost
				route, params, err = router.FindRoute(post)
			}
			if err != nil {
				t.Fatalf("find route %s: %v", c.path, err)
			}
			in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
			if c.method == http.MethodPost {
				err = openapi3filter.ValidateRequest(context.Background(), in)
				switch {
				case c.reqValid && err != nil:
					t.Errorf("the document refuses the request: %v", err)
				case !c.reqValid && err == nil:
					t.Errorf("the document accepts a request the gateway refuses with %d %s", resp.StatusCode, c.code)
				case err != nil:
					t.Logf("the document refuses the request too: %v", err)
				}
			}

			// What the document says about the reply.
			out := &openapi3filter.ResponseValidationInput{
				RequestValidationInput: in,
				Status:                 resp.StatusCode,
				Header:                 resp.Header,
				Options:                opts,
			}
			out.SetBodyBytes(body)
			if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
				t.Errorf("the reply does not match the document: %v", err)
			}
		})
	}

	// What the HTTP layer answers before the handler sees a request: sent as
	// raw bytes, since an HTTP client would not send them.
	t.Run("HTTP layer", func(t *testing.T) {
		for _, c := range []struct {
			name   string
			gw     *hgtest.Gateway
			raw    string
			status int
			code   string
		}{
			{"400 bad_request", plain, "NOT HTTP\r\n\r\n", 400, "bad_request"},
			{"431 headers_too_large", plain, "POST /v1/hits/web HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("b", 20000) + "\r\n\r\n",
				431, "headers_too_large"},
			{"408 request_timeout", tight, "POST /v1/hits/web HTTP/1.1\r\nHost: h\r\n", 408, "request_timeout"},
		} {
			t.Run(c.name, func(t *testing.T) {
				resp, body := rawExchange(t, c.gw.URL, c.raw)
				t.Logf("-> %d %v %s", resp.StatusCode, resp.Header, body)
				var reply struct{ Error string }
				if resp.StatusCode != c.status || json.Unmarshal(body, &reply) != nil || reply.Error != c.code {
					t.Fatalf("reply %d %s, want %d %s", resp.StatusCode, body, c.status, c.code)
				}
				req := (&apiCase{gw: c.gw, method: http.MethodPost, path: "/v1/hits/web", body: obj}).request(t)
				route, params, err := router.FindRoute(req)
				if err != nil {
					t.Fatalf("find route: %v", err)
				}
				in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
				out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Options: opts}
				out.SetBodyBytes(body)
				if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
					t.Errorf("the reply does not match the document: %v", err)
				}
			})
		}
	})

	// The checks above are only worth something if the document refuses
	// wrong replies: fabricated ones that break it must fail validation.
	t.Run("document refuses wrong replies", func(t *testing.T) {
		req := (&apiCase{gw: plain, method: http.MethodPost, path: "/v1/hits/web", body: obj}).request(t)
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Fatalf("find route: %v", err)
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
		for _, bad := range []struct {
			name   string
			status int
			header http.Header
			body   string
		}{
			{"202 without seq", 202, nil, `{"stream":"HOOKS","duplicate":false}`},
			{"202 extra field", 202, nil, `{"id":"a-1","stream":"HOOKS","seq":1,"duplicate":false}`},
			{"401 without WWW-Authenticate", 401, nil, `{"error":"missing_token","message":"m"}`},
			{"401 with a 403 code", 401, http.Header{"Www-Authenticate": {`Bearer realm="hookgate"`}}, `{"error":"forbidden","message":"m"}`},
			{"403 with a 401 code", 403, nil, `{"error":"invalid_signature","message":"m"}`},
			{"400 unknown code", 400, nil, `{"error":"no_such_code","message":"m"}`},
			{"400 with a 413 code", 400, nil, `{"error":"payload_too_large","message":"m"}`},
			{"408 with a 400 code", 408, nil, `{"error":"bad_request","message":"m"}`},
			{"431 with a 413 code", 431, nil, `{"error":"payload_too_large","message":"m"}`},
			{"429 Retry-After 0", 429, http.Header{"Retry-After": {"0"}}, `{"error":"rate_limited","message":"m"}`},
			{"503 without Retry-After", 503, nil, `{"error":"unavailable","message":"m"}`},
			{"405 without Allow", 405, nil, `{"error":"method_not_allowed","message":"m"}`},
			{"405 Allow GET", 405, http.Header{"Allow": {"GET"}}, `{"error":"method_not_allowed","message":"m"}`},
			{"401 WWW-Authenticate Basic", 401, http.Header{"Www-Authenticate": {"Basic"}}, `{"error":"invalid_token","message":"m"}`},
			{"415 without message", 415, nil, `{"error":"unsupported_media_type"}`},
			{"404 not documented", 404, nil, `{"error":"not_found","message":"m"}`},
		} {
			h := http.Header{"Content-Type": {"application/json"}}
			for k, v := range bad.header {
				h[k] = v
			}
			out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: bad.status, Header: h, Options: opts}
			out.SetBodyBytes([]byte(bad.body))
			err := openapi3filter.ValidateResponse(context.Background(), out)
			if err == nil {
				t.Errorf("%s: the document accepts it", bad.name)
				continue
			}
			first, _, _ := strings.Cut(err.Error(), "\n")
			t.Logf("%s: refused: %s", bad.name, first)
		}
	})
}

// rawExchange writes raw to the gateway at base (http://host:port) and reads
// one reply.
func rawExchange(t *testing.T, base, raw string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read reply body: %v", err)
	}
	return resp, body
}

// refusal is one row of ingest's refusal table.
type refusal struct {
	status int
	code   string
}

// ingestRefusals reads the refusal table from ingest's source: every
// newRefusal(status, "code", message) call in its non-test files, the status
// a number or a net/http Status constant. The codes are unexported, and the
// table is what every reply is built from.
func ingestRefusals(t *testing.T) []refusal {
	t.Helper()
	statuses := httpStatuses(t)
	files, err := filepath.Glob("../ingest/*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var out []refusal
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatalf("parse %s: %v", f, err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 3 {
				return true
			}
			if id, ok := call.Fun.(*ast.Ident); !ok || id.Name != "newRefusal" {
				return true
			}
			var r refusal
			switch a := call.Args[0].(type) {
			case *ast.SelectorExpr:
				r.status = statuses[a.Sel.Name]
			case *ast.BasicLit:
				r.status, _ = strconv.Atoi(a.Value)
			}
			if lit, ok := call.Args[1].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				r.code, _ = strconv.Unquote(lit.Value)
			}
			if r.status == 0 || r.code == "" {
				t.Fatalf("%s: a newRefusal call this test cannot read: status and code must be literals or net/http constants", fset.Position(call.Pos()))
			}
			if !slices.Contains(out, r) {
				out = append(out, r)
			}
			return true
		})
	}
	if len(out) < 10 {
		t.Fatalf("found %d refusals in ../ingest (newRefusal calls), want the whole error table: was it renamed?", len(out))
	}
	return out
}

// httpStatuses maps net/http's Status constants to their values, from the
// standard library's source.
func httpStatuses(t *testing.T) map[string]int {
	t.Helper()
	f := filepath.Join(build.Default.GOROOT, "src", "net", "http", "status.go")
	file, err := parser.ParseFile(token.NewFileSet(), f, nil, 0)
	if err != nil {
		t.Fatalf("parse %s: %v", f, err)
	}
	out := map[string]int{}
	for _, d := range file.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if i < len(vs.Values) {
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok {
						out[name.Name], _ = strconv.Atoi(lit.Value)
					}
				}
			}
		}
	}
	if out["StatusRequestTimeout"] != 408 {
		t.Fatalf("%s: read no StatusRequestTimeout = 408", f)
	}
	return out
}

// TestOpenAPIErrorCodesMatchIngest holds the document's ErrorCode enum to
// ingest's refusal table, both ways, and wants every refusal but 404 (which
// the document describes only in words) accepted as a reply of both
// operations, with its status.
func TestOpenAPIErrorCodesMatchIngest(t *testing.T) {
	doc := loadOpenAPI(t)
	refusals := ingestRefusals(t)

	var want []string
	for _, r := range refusals {
		if !slices.Contains(want, r.code) {
			want = append(want, r.code)
		}
	}
	var got []string
	for _, v := range doc.Components.Schemas["ErrorCode"].Value.Enum {
		got = append(got, fmt.Sprint(v))
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("ErrorCode enum in %s:\n  %v\ningest's refusal table:\n  %v", openAPIFile, got, want)
	}

	doc.Servers = openapi3.Servers{{URL: "http://127.0.0.1:8080"}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	opts := &openapi3filter.Options{AuthenticationFunc: authenticate, IncludeResponseStatus: true}
	// Every header any reply must carry, so that only status and body decide.
	header := http.Header{
		"Content-Type":     {"application/json"},
		"Www-Authenticate": {`Bearer realm="hookgate"`},
		"Allow":            {"POST"},
		"Retry-After":      {"1"},
	}
	for _, path := range []string{"/v1/hits/web", "/v1/deploys/web"} {
		req, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:8080"+path, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Fatalf("find route %s: %v", path, err)
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
		for _, r := range refusals {
			if r.status == http.StatusNotFound {
				continue
			}
			out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: r.status, Header: header, Options: opts}
			out.SetBodyBytes([]byte(`{"error":` + strconv.Quote(r.code) + `,"message":"m"}`))
			if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
				first, _, _ := strings.Cut(err.Error(), "\n")
				t.Errorf("%s: ingest answers %d %s; the document does not allow it: %s", route.Operation.OperationID, r.status, r.code, first)
			}
		}
	}
}

// TestOpenAPIDescribesSignedSenders wants both operations to describe what
// senders that sign send: the credential query parameter, every header of
// the signature table (and Svix's names), the sender ids, the event headers
// and X-Gitlab-Token as header parameters; and GitHub's form content type as
// a body of one field, payload.
func TestOpenAPIDescribesSignedSenders(t *testing.T) {
	doc := loadOpenAPI(t)
	var want []string
	want = append(want, signatureHeaders()...)
	want = append(want, senderIDHeaders...)
	want = append(want, eventHeaders...)
	want = append(want, otherHeaders...)
	for _, path := range []string{"/v1/hits/{app}", "/v1/deploys/{app}"} {
		op := doc.Paths.Value(path).Post
		headers := map[string]bool{}
		query := map[string]bool{}
		for _, p := range op.Parameters {
			switch p.Value.In {
			case "header":
				headers[strings.ToLower(p.Value.Name)] = true
			case "query":
				query[p.Value.Name] = true
			}
		}
		for _, h := range want {
			if !headers[strings.ToLower(h)] {
				t.Errorf("%s: no header parameter %s", op.OperationID, h)
			}
		}
		if !query["credential"] {
			t.Errorf("%s: no query parameter credential", op.OperationID)
		}
		if _, ok := op.Responses.Map()["204"]; !ok {
			t.Errorf("%s: no 204 reply (GitHub's ping)", op.OperationID)
		}
	}

	// The form body as the document validates it: the field payload.
	// (kin-openapi decodes only the fields a form schema names, so a second
	// field, which the gateway refuses with 415, cannot be tried here.)
	doc.Servers = openapi3.Servers{{URL: "http://127.0.0.1:8080"}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	opts := &openapi3filter.Options{AuthenticationFunc: authenticate}
	sig := "sha256=" + strings.Repeat("0", 64)
	for _, c := range []struct {
		name  string
		body  string
		valid bool
	}{
		{"payload", "payload=" + url.QueryEscape(`{"ref":"main"}`), true},
		{"another field", "ref=main", false},
	} {
		req, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:8080/v1/deploys/web?credential=cred-1", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Hub-Signature-256", sig)
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Fatalf("find route: %v", err)
		}
		err = openapi3filter.ValidateRequest(context.Background(), &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts})
		if c.valid != (err == nil) {
			t.Errorf("form body %s: the document says %v, want valid %v", c.name, err, c.valid)
		}
	}
}
