package ingest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/bus"
	"github.com/hookgate/hookgate/metrics"
)

// The fuzz target drives raw bytes through fasthttp into the handler. It
// stands in for the credential store and JetStream with in-memory tables so
// that it runs thousands of inputs a second; the behaviour tests in gateway/
// use the real ones.

const fuzzToken = "hgh_fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfu" // checksum fixed up in init

var fuzzValid string

func init() {
	tok, _ := auth.NewToken(auth.KindHits)
	fuzzValid = tok
}

type memAuth map[auth.Hash]*auth.Credential

func (m memAuth) Lookup(_ context.Context, h auth.Hash) (*auth.Credential, error) {
	if c, ok := m[h]; ok {
		return c, nil
	}
	return nil, auth.ErrInvalidToken
}
func (m memAuth) Cached(h auth.Hash) (*auth.Credential, bool) { c, ok := m[h]; return c, ok }

func (m memAuth) LookupByID(context.Context, []byte) (*auth.Credential, error) {
	return nil, auth.ErrInvalidSigningCredential
}
func (m memAuth) CachedByID([]byte) (*auth.Credential, bool) { return nil, false }

type memPublisher struct{ seq uint64 }

func (p *memPublisher) Connected() bool { return true }

func (p *memPublisher) Publish(_ context.Context, msg *nats.Msg) (bus.Ack, error) {
	p.seq++
	return bus.Ack{Stream: "HOOKS", Seq: p.seq}, nil
}

// conn feeds a request from memory and collects the reply.
type conn struct {
	r *bytes.Reader
	w bytes.Buffer
}

func (c *conn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c *conn) Write(b []byte) (int, error)      { return c.w.Write(b) }
func (c *conn) Close() error                     { return nil }
func (c *conn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080} }
func (c *conn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 40000} }
func (c *conn) SetDeadline(time.Time) error      { return nil }
func (c *conn) SetReadDeadline(time.Time) error  { return nil }
func (c *conn) SetWriteDeadline(time.Time) error { return nil }

var knownCodes = map[string]bool{
	"not_found": true, "method_not_allowed": true, "missing_token": true, "invalid_token": true,
	"rate_limited": true, "invalid_app": true, "forbidden": true, "unsupported_media_type": true,
	"invalid_idempotency_key": true, "invalid_body": true, "payload_too_large": true, "unavailable": true,
	"bad_request": true, "headers_too_large": true, "request_timeout": true,
}

func FuzzHandler(f *testing.F) {
	post := func(path, auth, extra, body string) []byte {
		return []byte("POST " + path + " HTTP/1.1\r\nHost: h\r\nAuthorization: " + auth + "\r\n" + extra +
			"Content-Length: " + itoa(len(body)) + "\r\n\r\n" + body)
	}
	f.Add(post("/v1/hits/web", "Bearer "+fuzzValid, "Content-Type: application/json\r\n", `{"a":1}`))
	f.Add(post("/v1/hits/web", "Bearer "+fuzzValid, "Idempotency-Key: k1\r\n", `[{"a":1},{}]`))
	f.Add(post("/v1/deploys/web", "Bearer "+fuzzValid, "", `{}`))
	f.Add(post("/v1/hits/Web", "Basic dTpw", "", `{}`))
	f.Add(post("/v1/hits/web", "Bearer "+fuzzToken, "Idempotency-Key: a\r\nIdempotency-Key: b\r\n", `{}`))
	f.Add([]byte("GET /v1/hits/web HTTP/1.1\r\nHost: h\r\n\r\n"))
	f.Add([]byte("POST /v1/hits/web HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"))
	f.Add([]byte("\x00\xff garbage\r\n\r\n"))
	f.Add([]byte("POST /v1/hits/web HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}"))
	f.Add(post("/v1/hits/web", "Bearer "+fuzzToken, "Expect: 100-continue\r\n", `{}`))

	m := metrics.New("fuzz", metrics.Options{PerApp: true, PerAppMax: 10, CredentialSeen: true, CredentialMax: 10})
	creds := memAuth{auth.HashToken([]byte(fuzzValid)): {ID: "c1", Org: "acme", Kind: auth.KindHits, Version: 1}}
	cfg := DefaultConfig()
	cfg.MaxBody, cfg.AuthFailureRate, cfg.AuthFailureBurst = 4096, 1000, 1000
	h := New(cfg, creds, &memPublisher{}, m, slog.New(slog.DiscardHandler))
	srv := NewServer(DefaultServerConfig(), h)

	f.Fuzz(func(t *testing.T, raw []byte) {
		c := &conn{r: bytes.NewReader(raw)}
		_ = srv.ServeConn(c) // errors are the client's; a panic fails the fuzz
		out := c.w.Bytes()
		if len(out) == 0 {
			return // fasthttp may close a connection with nothing parsable
		}
		if bytes.Contains(out, []byte(fuzzValid)) {
			t.Fatalf("reply holds the token: %q", out)
		}
		br := bufio.NewReader(bytes.NewReader(out))
		for {
			status, err := br.ReadString('\n')
			if err == io.EOF || status == "" {
				return
			}
			if !strings.HasPrefix(status, "HTTP/1.1 ") {
				t.Fatalf("reply does not start with a status line: %q", out)
			}
			code := status[9:12]
			clen := -1
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("truncated reply headers: %q", out)
				}
				if line == "\r\n" {
					break
				}
				if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
					clen = atoi(strings.TrimSpace(v))
				}
			}
			if code == "100" {
				continue // Continue: the final reply follows
			}
			if clen < 0 {
				t.Fatalf("reply without Content-Length: %q", out)
			}
			body := make([]byte, clen)
			if _, err := io.ReadFull(br, body); err != nil {
				t.Fatalf("short reply body: %q", out)
			}
			var reply map[string]any
			if err := json.Unmarshal(body, &reply); err != nil {
				t.Fatalf("reply %s body is not JSON: %q", code, body)
			}
			if code == "202" {
				if reply["stream"] != "HOOKS" {
					t.Fatalf("202 body %q", body)
				}
				continue
			}
			if e, _ := reply["error"].(string); !knownCodes[e] {
				t.Fatalf("reply %s with unknown error code %q", code, body)
			}
			if code[0] == '5' && reply["error"] != "unavailable" {
				t.Fatalf("server error %s: %q", code, body)
			}
		}
	})
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}
