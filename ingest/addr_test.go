package ingest

import (
	"net"
	"testing"

	"github.com/valyala/fasthttp"
)

// Refused-token budgets are kept per IPv4 address and per IPv6 /64: one host
// usually holds a whole /64, and must not get a fresh budget per address.
func TestRemoteAddrKeysIPv6By64(t *testing.T) {
	key := func(ip string) string {
		var ctx fasthttp.RequestCtx
		ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.ParseIP(ip), Port: 1234}, nil)
		return remoteAddr(&ctx).String()
	}
	if a, b := key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"); a != b {
		t.Fatalf("same /64, different keys: %s %s", a, b)
	}
	if a, b := key("2001:db8:1:2::1"), key("2001:db8:1:3::1"); a == b {
		t.Fatalf("different /64s share a key: %s", a)
	}
	if a, b := key("192.0.2.1"), key("192.0.2.2"); a == b {
		t.Fatalf("IPv4 addresses share a key: %s", a)
	}
	if k := key("::ffff:192.0.2.1"); k != "192.0.2.1" {
		t.Fatalf("IPv4-mapped address keyed as %s", k)
	}
}

// Connection caps count the same way as the refused-token budgets.
func TestConnAddressMatchesRemoteAddr(t *testing.T) {
	for _, ip := range []string{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9", "2001:db8:1:3::1", "192.0.2.7", "::ffff:192.0.2.7"} {
		tcp := &net.TCPAddr{IP: net.ParseIP(ip), Port: 4321}
		var ctx fasthttp.RequestCtx
		ctx.Init(&fasthttp.Request{}, tcp, nil)
		if got, want := connAddress(tcp), remoteAddr(&ctx); got != want {
			t.Fatalf("%s: connection counted as %s, budget kept as %s", ip, got, want)
		}
	}
}
