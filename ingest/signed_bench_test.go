package ingest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"strconv"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/metrics"
	"github.com/hookgate/hookgate/signature"
)

// signingAuth is memAuth with one signing credential, found by id.
type signingAuth struct {
	memAuth
	id   string
	cred *auth.Credential
}

func (s signingAuth) LookupByID(_ context.Context, id []byte) (*auth.Credential, error) {
	if string(id) == s.id {
		return s.cred, nil
	}
	return nil, auth.ErrInvalidSigningCredential
}
func (s signingAuth) CachedByID(id []byte) (*auth.Credential, bool) {
	if string(id) == s.id {
		return s.cred, true
	}
	return nil, false
}

// benchServer is the handler behind fasthttp with credentials and a publisher
// in memory: what a request costs the gateway apart from NATS.
func benchServer(b *testing.B) (srv *fasthttp.Server, bearerReq, signedReq []byte) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key, err := signature.NewKey([]byte(secret))
	if err != nil {
		b.Fatal(err)
	}
	cred := &auth.Credential{ID: "c1", Org: "acme", Kind: auth.KindHits, Version: 1, Keys: []*signature.Key{key}}
	creds := signingAuth{memAuth: memAuth{auth.HashToken([]byte(fuzzValid)): cred}, id: "c1", cred: cred}
	m := metrics.New("bench", metrics.DefaultOptions())
	h := New(DefaultConfig(), creds, &memPublisher{}, m, slog.New(slog.DiscardHandler))
	srv = NewServer(DefaultServerConfig(), h)

	body := bytes.Repeat([]byte("x"), 300)
	copy(body, `{"zen":"`)
	copy(body[len(body)-2:], `"}`)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	sig := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	head := "POST /v1/hits/web%s HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n%sContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	bearerReq = append([]byte(sprintf(head, "", "Authorization: Bearer "+fuzzValid+"\r\n")), body...)
	signedReq = append([]byte(sprintf(head, "?credential=c1", "X-Hub-Signature-256: "+sig+"\r\nX-GitHub-Event: push\r\n")), body...)
	return srv, bearerReq, signedReq
}

func sprintf(format string, a ...string) string {
	out := format
	for _, s := range a {
		i := bytes.Index([]byte(out), []byte("%s"))
		out = out[:i] + s + out[i+2:]
	}
	return out
}

// serveOne runs one raw request through srv and checks the 202.
func serveOne(b *testing.B, srv *fasthttp.Server, c *conn, raw []byte) {
	c.r.Reset(raw)
	c.w.Reset()
	_ = srv.ServeConn(c)
	if !bytes.HasPrefix(c.w.Bytes(), []byte("HTTP/1.1 202")) {
		b.Fatalf("reply %q", c.w.Bytes())
	}
}

// A bearer request and a GitHub-signed one (300-byte body, a warm
// credential) through the whole handler with NATS in memory: the difference
// is what verifying the signature costs.
func BenchmarkHandlerBearer300B(b *testing.B) {
	srv, bearer, _ := benchServer(b)
	c := &conn{r: bytes.NewReader(nil)}
	b.ReportAllocs()
	for b.Loop() {
		serveOne(b, srv, c, bearer)
	}
}

func BenchmarkHandlerSignedGitHub300B(b *testing.B) {
	srv, _, signed := benchServer(b)
	c := &conn{r: bytes.NewReader(nil)}
	b.ReportAllocs()
	for b.Loop() {
		serveOne(b, srv, c, signed)
	}
}
