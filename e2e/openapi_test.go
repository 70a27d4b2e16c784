package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/internal/hgtest"
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

// authenticate stands in for the gateway's token check, which the document
// cannot express: it accepts any credentials sent in the scheme's form, and
// refuses a request that does not use the scheme at all, as the document's
// security requirement (bearer or basic) says.
func authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	scheme := strings.ToLower(in.SecurityScheme.Scheme)
	h := in.RequestValidationInput.Request.Header.Get("Authorization")
	if len(h) <= len(scheme)+1 || !strings.EqualFold(h[:len(scheme)+1], scheme+" ") {
		return fmt.Errorf("no %s credentials", scheme)
	}
	return nil
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
	code     string // error code; empty for a 202
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

	plain := hgtest.StartGateway(t, "", nil)
	// tight has a small --max-body and a per-credential rate of one request
	// per 100s (burst 1), for 413 and 429.
	tight := hgtest.StartGateway(t, "", func(cfg *gateway.Config) {
		cfg.Ingest.MaxBody = 1024
		cfg.Ingest.RateLimit = 0.01
		cfg.Ingest.RateBurst = 1
	})
	reg := hgtest.Registry(t, plain.NATSURL(), "")
	hits := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "openapi hits"})
	deploy := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindDeploy, App: "web", Name: "openapi deploy"})
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
	}
	covered := map[int]bool{}
	for _, c := range cases {
		covered[c.status] = true
	}
	for _, s := range []int{202, 400, 401, 403, 405, 413, 415, 429} {
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
			{"202 without seq", 202, nil, `{"id":"a-1","stream":"HOOKS","duplicate":false}`},
			{"202 extra field", 202, nil, `{"id":"a-1","stream":"HOOKS","seq":1,"duplicate":false,"token":"x"}`},
			{"401 without WWW-Authenticate", 401, nil, `{"error":"missing_token","message":"m"}`},
			{"401 with a 403 code", 401, http.Header{"Www-Authenticate": {`Bearer realm="hookgate"`}}, `{"error":"forbidden","message":"m"}`},
			{"400 unknown code", 400, nil, `{"error":"bad_request","message":"m"}`},
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
