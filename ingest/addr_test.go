package ingest

import (
	"net"
	"net/netip"
	"testing"

	"github.com/valyala/fasthttp"
)

// Refused-token budgets are kept per IPv4 address and per IPv6 /64: one host
// usually holds a whole /64, and must not get a fresh budget per address.
func TestRemoteAddrKeysIPv6By64(t *testing.T) {
	key := func(ip string) string {
		var ctx fasthttp.RequestCtx
		ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.ParseIP(ip), Port: 1234}, nil)
		var h Handler
		return clientKey(h.clientAddr(&ctx)).String()
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
		var h Handler
		if got, want := connAddress(tcp), clientKey(h.clientAddr(&ctx)); got != want {
			t.Fatalf("%s: connection counted as %s, budget kept as %s", ip, got, want)
		}
	}
}

func TestProxiesClient(t *testing.T) {
	p, err := ParseProxies("10.0.0.0/8, 192.0.2.5,2001:db8::/32")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddr
	xff := func(vs ...string) [][]byte {
		var out [][]byte
		for _, v := range vs {
			out = append(out, []byte(v))
		}
		return out
	}
	for _, tt := range []struct {
		name string
		peer string
		xff  [][]byte
		want string
	}{
		{"untrusted peer: its own address, whatever it claims", "198.51.100.1", xff("203.0.113.9"), "198.51.100.1"},
		{"trusted peer, one client", "10.1.2.3", xff("203.0.113.9"), "203.0.113.9"},
		{"right-most untrusted wins over what the client wrote", "10.1.2.3", xff("1.1.1.1, 203.0.113.9"), "203.0.113.9"},
		{"trusted hops are skipped", "10.1.2.3", xff("203.0.113.9, 10.9.9.9, 192.0.2.5"), "203.0.113.9"},
		{"several headers read as one list", "10.1.2.3", xff("1.1.1.1", "203.0.113.9, 10.0.0.2"), "203.0.113.9"},
		{"all trusted: the left-most", "10.1.2.3", xff("10.0.0.7, 10.0.0.8"), "10.0.0.7"},
		{"no header: the proxy", "10.1.2.3", nil, "10.1.2.3"},
		{"garbage where the client should be: the proxy", "10.1.2.3", xff("203.0.113.9, nonsense"), "10.1.2.3"},
		{"IPv6 client", "2001:db8::1", xff("2001:db9::5"), "2001:db9::5"},
		{"IPv4-mapped", "10.1.2.3", xff("::ffff:203.0.113.9"), "203.0.113.9"},
		{"spaces and tabs", "10.1.2.3", xff(" 203.0.113.9 ,\t10.0.0.2 "), "203.0.113.9"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.client(addr(tt.peer), tt.xff); got != addr(tt.want) {
				t.Fatalf("client(%s, %q) = %s, want %s", tt.peer, tt.xff, got, tt.want)
			}
		})
	}
	for _, bad := range []string{"10.0.0.0/33", "host.example", "10.0.0.1/8/2"} {
		if _, err := ParseProxies(bad); err == nil {
			t.Errorf("ParseProxies(%q) accepted", bad)
		}
	}
}
