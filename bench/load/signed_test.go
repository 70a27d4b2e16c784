package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/valyala/fasthttp"
)

// The signed row's request, as the harness builds it, is a GitHub-style
// delivery a gateway accepts and stores key-less with Hook-Auth
// hub-signature; the same request with a wrong signature is refused, so the
// row measures the verification and not a refusal. The Go generator and the
// wrk script send that request.
func TestSignedRequestIsAccepted(t *testing.T) {
	dir := t.TempDir()
	ring := filepath.Join(dir, "secret-keys")
	if err := createKeyRing(ring); err != nil {
		t.Fatal(err)
	}
	g, err := startHookgateInProc(filepath.Join(dir, "data"), "", ring, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer g.stop()
	body := payload(300)
	st, err := signedTarget(g.natsURL, g.addr, ring, body) // probes: fails unless a 2xx comes
	if err != nil {
		t.Fatal(err)
	}
	if st.token != "" || !strings.Contains(st.path, "?credential=") || !strings.HasPrefix(st.sig, "sha256=") {
		t.Fatalf("signed target %+v", st)
	}

	send := func(tg target) (int, string) {
		t.Helper()
		req := newRequest(tg, body)
		defer fasthttp.ReleaseRequest(req)
		if len(req.Header.Peek(fasthttp.HeaderAuthorization)) != 0 {
			t.Fatalf("a signed request carries Authorization")
		}
		resp := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseResponse(resp)
		if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode(), string(resp.Body())
	}
	if code, reply := send(st); code != fasthttp.StatusAccepted || !strings.Contains(reply, `"duplicate":false`) {
		t.Fatalf("signed request: %d %s", code, reply)
	}
	stored := lastHook(t, g.natsURL)
	if got := stored.Header.Get("Hook-Auth"); got != "hub-signature" {
		t.Errorf("stored Hook-Auth %q, want hub-signature", got)
	}
	if stored.Header.Get("Nats-Msg-Id") != "" || stored.Header.Get("Hook-Idempotency-Key") != "" {
		t.Errorf("a signed delivery without X-GitHub-Delivery stored with a key: %v", stored.Header)
	}
	if string(stored.Data) != string(body) {
		t.Errorf("stored body differs from the one sent")
	}

	wrong := st
	wrong.sig = hubSignature("whsec_not-the-secret", body)
	if code, reply := send(wrong); code != fasthttp.StatusUnauthorized || !strings.Contains(reply, `"invalid_signature"`) {
		t.Fatalf("wrong signature: %d %s, want 401 invalid_signature", code, reply)
	}

	res, err := goGen{}.run(st, body, 2, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.ok2xx == 0 || res.errors != 0 {
		t.Fatalf("goGen against the signed target: %+v", res)
	}

	lua := string(wrkLua(st, body))
	if !strings.Contains(lua, `wrk.headers["X-Hub-Signature-256"] = "`+st.sig+`"`) || strings.Contains(lua, "Authorization") {
		t.Fatalf("wrk script of the signed target:\n%s", lua)
	}
	if bearer := string(wrkLua(target{token: "tok"}, body)); !strings.Contains(bearer, `wrk.headers["Authorization"] = "Bearer tok"`) {
		t.Fatalf("wrk script of a bearer target:\n%s", bearer)
	}
}

// lastHook is the last message of the gateway's HOOKS stream.
func lastHook(t *testing.T, natsURL string) *jetstream.RawStreamMsg {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, hooksStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(ctx, info.State.LastSeq)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
