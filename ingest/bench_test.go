// External test package: internal/hgtest imports gateway, which imports
// ingest, so package ingest itself cannot import hgtest.
package ingest_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/bus"
	"github.com/hookgate/hookgate/ingest"
	"github.com/hookgate/hookgate/internal/hgtest"
	"github.com/hookgate/hookgate/metrics"
)

// benchObject returns a JSON object of exactly n bytes.
func benchObject(n int) []byte {
	head := `{"monitor":"checkout-api","status":"down","region":"eu-west-1","checked_at":"2025-06-01T12:00:00Z","response_ms":1234,"message":"`
	tail := `"}`
	return []byte(head + strings.Repeat("x", max(0, n-len(head)-len(tail))) + tail)
}

// benchBatch returns a hits batch (an array of small objects) of about n bytes,
// with nesting, numbers and escapes for the validator to walk.
func benchBatch(n int) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := 0; b.Len() < n-200; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"monitor":"api-`)
		b.WriteString(strconv.Itoa(i))
		b.WriteString(`","status":"down","tags":["eu","prod"],"latency":{"p50":12.5,"p99":340},"note":"a \"quoted\" line\n"}`)
	}
	b.WriteByte(']')
	return b.Bytes()
}

func BenchmarkValidateBody300B(b *testing.B) {
	body := benchObject(300)
	if len(body) != 300 {
		b.Fatalf("body is %d bytes", len(body))
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := ingest.ValidateBody(auth.KindHits, body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidateBody64KiB(b *testing.B) {
	for _, c := range []struct {
		name string
		body []byte
	}{
		{"object", benchObject(64 << 10)},
		{"batch", benchBatch(64 << 10)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := ingest.ValidateBody(auth.KindHits, c.body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchHandler serves the real Handler on an in-memory listener, with the
// real credential store and publisher on an in-process NATS server, and
// returns a client whose requests reach it, and a valid hits token.
func benchHandler(b *testing.B) (*fasthttp.Client, string) {
	b.Helper()
	ns := hgtest.RunNATS(b)
	nc, js := hgtest.Connect(b, ns.ClientURL())
	ctx := context.Background()
	if _, err := bus.EnsureStream(ctx, js, bus.StreamSpec{Name: "HOOKS", SubjectPrefix: "hooks", Replicas: 1, Duplicates: 2 * time.Minute}); err != nil {
		b.Fatal(err)
	}
	reg := hgtest.Registry(b, ns.ClientURL(), "")
	is := hgtest.Issue(b, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "bench"})

	m := metrics.New("bench", metrics.DefaultOptions()) // as serve runs: last-seen times on
	store, err := auth.NewStore(reg.KV, m, auth.StoreConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(store.Close)
	pub, err := bus.NewPublisher(nc, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	h := ingest.New(ingest.DefaultConfig(), store, pub, m, slog.New(slog.DiscardHandler))
	srv := ingest.NewServer(ingest.DefaultServerConfig(), h)
	ln := fasthttputil.NewInmemoryListener()
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Shutdown(); _ = ln.Close() })

	client := &fasthttp.Client{
		Dial:            func(string) (net.Conn, error) { return ln.Dial() },
		MaxConnsPerHost: 1024,
	}
	return client, is.Token
}

func benchRequest(token string, body []byte) *fasthttp.Request {
	req := fasthttp.AcquireRequest()
	req.SetRequestURI("http://hookgate/v1/hits/app1")
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.Set(fasthttp.HeaderAuthorization, "Bearer "+token)
	req.SetBody(body)
	return req
}

func do(b *testing.B, client *fasthttp.Client, req *fasthttp.Request, resp *fasthttp.Response) {
	if err := client.Do(req, resp); err != nil {
		b.Error(err)
		return
	}
	if resp.StatusCode() != fasthttp.StatusAccepted {
		b.Errorf("status %d: %s", resp.StatusCode(), resp.Body())
	}
}

// BenchmarkHandler is one whole webhook, one at a time: request over an
// in-memory connection, token check (cache hit after the first), body check,
// JetStream publish to a file stream and its ack, 202.
func BenchmarkHandler(b *testing.B) {
	client, token := benchHandler(b)
	req := benchRequest(token, benchObject(300))
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	do(b, client, req, resp) // fills the token cache
	b.SetBytes(300)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		do(b, client, req, resp)
		if b.Failed() {
			return
		}
	}
}

// BenchmarkHandlerParallel is the same with 32 requests per core in flight,
// so publishes overlap as they do under load.
func BenchmarkHandlerParallel(b *testing.B) {
	client, token := benchHandler(b)
	body := benchObject(300)
	warm := benchRequest(token, body)
	wresp := fasthttp.AcquireResponse()
	do(b, client, warm, wresp)
	fasthttp.ReleaseRequest(warm)
	fasthttp.ReleaseResponse(wresp)
	b.SetBytes(300)
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := benchRequest(token, body)
		defer fasthttp.ReleaseRequest(req)
		resp := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseResponse(resp)
		for pb.Next() {
			do(b, client, req, resp)
		}
	})
}
