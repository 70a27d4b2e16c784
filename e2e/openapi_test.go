package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
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
