package ingest

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/metrics"
)

// A sender that asks before sending its body is told at once when the body
// would be refused anyway, with the contract's reply; it is invited to send
// it only when path, method, token presence and size pass.
func TestExpectContinue(t *testing.T) {
	m := metrics.New("test", metrics.DefaultOptions())
	creds := memAuth{auth.HashToken([]byte(fuzzValid)): {ID: "c1", Org: "acme", Kind: auth.KindHits, Version: 1}}
	cfg := DefaultConfig()
	cfg.MaxBody = 100
	h := New(cfg, creds, &memPublisher{}, m, slog.New(slog.DiscardHandler))
	srv := NewServer(DefaultServerConfig(), h)
	ask := func(method, path, auth string, length int) string {
		req := method + " " + path + " HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Type: application/json\r\n" +
			auth + "Content-Length: " + itoa(length) + "\r\n\r\n"
		body := strings.Repeat(" ", max(0, length-2)) + "{}"
		c := &conn{r: bytes.NewReader([]byte(req + body))}
		_ = srv.ServeConn(c)
		return c.w.String()
	}
	bearer := "Authorization: Bearer " + fuzzValid + "\r\n"
	for _, tt := range []struct {
		name, method, path, auth string
		length                   int
		want                     string // the first reply's status line and, for a refusal, its body
	}{
		{"passes", "POST", "/v1/hits/web", bearer, 2, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted"},
		{"no such route", "POST", "/v1/nope/web", bearer, 2, `HTTP/1.1 404 Not Found`},
		{"not POST", "PUT", "/v1/hits/web", bearer, 2, `HTTP/1.1 405 Method Not Allowed`},
		{"announced body too large", "POST", "/v1/hits/web", bearer, 101, `HTTP/1.1 413 Request Entity Too Large`},
		{"no token", "POST", "/v1/hits/web", "", 2, `HTTP/1.1 401 Unauthorized`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := ask(tt.method, tt.path, tt.auth, tt.length)
			if !strings.HasPrefix(out, tt.want) {
				t.Fatalf("reply %q, want it to start %q", out, tt.want)
			}
			if strings.HasPrefix(tt.want, "HTTP/1.1 100") {
				return
			}
			if strings.Contains(out, "100 Continue") || strings.Count(out, "HTTP/1.1 ") != 1 {
				t.Fatalf("refused, yet more than one reply: %q", out)
			}
			if !strings.Contains(out, "Connection: close\r\n") {
				t.Fatalf("the connection is kept open though the body may follow: %q", out)
			}
			if !strings.Contains(out, "\r\n\r\n{\"error\":") {
				t.Fatalf("the refusal has no JSON error body: %q", out)
			}
		})
	}
}
