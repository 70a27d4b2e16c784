package main

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// keyServer is a fasthttp server on loopback that answers 202 and records
// the Idempotency-Key of every request ("" when it had none).
type keyServer struct {
	mu   sync.Mutex
	keys []string
}

func startKeyServer(t *testing.T) (*keyServer, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ks := &keyServer{}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ks.mu.Lock()
		ks.keys = append(ks.keys, string(ctx.Request.Header.Peek(keyHeader)))
		ks.mu.Unlock()
		ctx.SetStatusCode(fasthttp.StatusAccepted)
		ctx.SetBodyString(`{"stream":"HOOKS","seq":1,"duplicate":false}`)
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ks, ln.Addr().String()
}

// checkKeys fails unless there are want keys (at least want, if atLeast),
// each of keyLen bytes with prefix (any prefix when it is ""), none twice.
func checkKeys(t *testing.T, keys []string, prefix string, want int64, atLeast bool) {
	t.Helper()
	if n := int64(len(keys)); n < want || (!atLeast && n != want) {
		t.Fatalf("the server saw %d requests, want %d", n, want)
	}
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if len(k) != keyLen || !strings.HasPrefix(k, prefix) || k[keyPrefixLen] != '-' {
			t.Fatalf("key %q: want %d bytes, \"<%d hex>-<%d digits>\" with prefix %q", k, keyLen, keyPrefixLen, keyDigits, prefix)
		}
		if seen[k] {
			t.Fatalf("key %q sent twice", k)
		}
		seen[k] = true
	}
}

// rate-gen writes a fresh key of fixed length into its prebuilt request
// before each send, without allocating.
func TestRateGenSendsAFreshKeyPerRequest(t *testing.T) {
	ks, addr := startKeyServer(t)
	l, err := newRateLoop(netip.MustParseAddrPort(addr), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	const prefix = "0123456789abcdef"
	req := newRateRequest(hitsPath, addr, "tok", payload(300), prefix)
	r := l.run(req, 2000, 250*time.Millisecond)
	if r.Requests != 500 || r.OK2xx != 500 || r.Errors != 0 {
		t.Fatalf("want 500 answered requests: %+v", r)
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	checkKeys(t, ks.keys, prefix, 500, false)

	plain := newRateRequest(hitsPath, addr, "tok", payload(300), "")
	if bytes.Contains(plain.b, []byte(keyHeader)) || plain.keyAt != 0 {
		t.Fatalf("a request without a prefix carries a key: %q", plain.b)
	}
	if d := len(req.b) - len(plain.b); d != len(keyHeader+": \r\n")+keyLen {
		t.Fatalf("the key makes the request %d bytes longer, want %d", d, len(keyHeader+": \r\n")+keyLen)
	}
	n := uint64(0)
	if a := testing.AllocsPerRun(1000, func() { n++; req.stamp(n) }); a != 0 {
		t.Fatalf("stamp allocates %.1f times per request", a)
	}
	if got := string(req.b[req.keyAt-keyPrefixLen-1 : req.keyAt+keyDigits]); got != prefix+"-0000000000001001" {
		t.Fatalf("after stamp(1001) the key is %q", got)
	}
}

// A request sent again after a keep-alive close (rateLoop.resend) keeps its
// key: had the gateway stored it after all, the resend is its duplicate.
func TestRateGenResendKeepsTheKey(t *testing.T) {
	req := newRateRequest("/", "x", "tok", []byte("{}"), "fedcba9876543210")
	var (
		mu   sync.Mutex
		keys []string
	)
	// Each connection answers one request and drops the next unanswered.
	ln := serveEach(t, func(c net.Conn) {
		buf := make([]byte, len(req.b))
		for served := 0; ; served++ {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			i := bytes.Index(buf, []byte(keyHeader+": "))
			mu.Lock()
			keys = append(keys, string(buf[i+len(keyHeader)+2:i+len(keyHeader)+2+keyLen]))
			mu.Unlock()
			if served == 1 {
				return
			}
			if _, err := c.Write([]byte(acceptedReply)); err != nil {
				return
			}
		}
	})
	l, err := newRateLoop(netip.MustParseAddrPort(ln.Addr().String()), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	r := l.run(req, 100, 100*time.Millisecond)
	if r.OK2xx != 10 || r.Errors != 0 {
		t.Fatalf("want 10 answered requests: %+v", r)
	}
	mu.Lock()
	defer mu.Unlock()
	// Requests 2..10 were each read twice, in a row, with the same key.
	if len(keys) != 19 {
		t.Fatalf("the server read %d requests, want 19: %q", len(keys), keys)
	}
	distinct := []string{keys[0]}
	for i := 1; i < len(keys); i += 2 {
		if keys[i] != keys[i+1] {
			t.Fatalf("resent with key %q, first sent with %q", keys[i+1], keys[i])
		}
		distinct = append(distinct, keys[i])
	}
	checkKeys(t, distinct, "fedcba9876543210", 10, false)
}

// goGen sends a fresh key with every request of a keyed target, and none
// otherwise.
func TestGoGenSetsAFreshKeyWhenKeyed(t *testing.T) {
	for _, keyed := range []bool{false, true} {
		t.Run(keyedName(keyed), func(t *testing.T) {
			ks, addr := startKeyServer(t)
			res, err := goGen{}.run(target{addr: addr, path: hitsPath, token: "tok", keyed: keyed}, payload(300), 4, 200*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if res.ok2xx == 0 || res.errors != 0 {
				t.Fatalf("want answered requests and no errors: %+v", res)
			}
			ks.mu.Lock()
			defer ks.mu.Unlock()
			if !keyed {
				for _, k := range ks.keys {
					if k != "" {
						t.Fatalf("a key-less target sent key %q", k)
					}
				}
				return
			}
			checkKeys(t, ks.keys, keyPrefix, res.ok2xx, true)
		})
	}
}

// wrk's script sets a key per request only for a keyed target.
func TestWrkScriptKeysOnlyWhenKeyed(t *testing.T) {
	plain := string(wrkLua(target{token: "tok"}, []byte("{}")))
	keyed := string(wrkLua(target{token: "tok", keyed: true}, []byte("{}")))
	if strings.Contains(plain, "request = function") || strings.Contains(plain, keyHeader) {
		t.Fatalf("key-less script sets keys:\n%s", plain)
	}
	if !strings.Contains(keyed, "request = function") || !strings.Contains(keyed, `wrk.headers["Idempotency-Key"]`) ||
		!strings.Contains(keyed, `-%016d", key_n)`) || strings.Contains(keyed, "%!") {
		t.Fatalf("keyed script:\n%s", keyed)
	}
}
