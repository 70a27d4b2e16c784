package ingest

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"

	"github.com/hookgate/hookgate/internal/ascii"
	"github.com/valyala/fasthttp"
)

// Proxies are the addresses whose connections may name their client in
// X-Forwarded-For (--trusted-proxies): a load balancer or Ingress in front.
// Behind one, every sender would otherwise share the proxy's refused-token
// budget.
type Proxies []netip.Prefix

// ParseProxies reads comma-separated CIDRs or addresses ("" is none).
func ParseProxies(s string) (Proxies, error) {
	var p Proxies
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if pfx, err := netip.ParsePrefix(f); err == nil {
			p = append(p, pfx.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("--trusted-proxies %q: want addresses or CIDRs, comma-separated", f)
		}
		a = a.Unmap()
		p = append(p, netip.PrefixFrom(a, a.BitLen()))
	}
	return p, nil
}

// trusts reports whether a is one of the proxies.
func (p Proxies) trusts(a netip.Addr) bool {
	a = a.Unmap()
	for _, pfx := range p {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// client returns the address of the client behind peer: peer itself unless
// it is a trusted proxy; then the right-most X-Forwarded-For address that is
// not itself trusted (a client can write anything left of what the proxies
// appended), or the left-most when all are. An entry that is not an address
// ends the walk: the peer is the client then.
func (p Proxies) client(peer netip.Addr, forwardedFor [][]byte) netip.Addr {
	if len(p) == 0 || !p.trusts(peer) {
		return peer
	}
	client := peer
	for i := len(forwardedFor) - 1; i >= 0; i-- {
		list := forwardedFor[i]
		for len(list) > 0 {
			entry := list
			if j := bytes.LastIndexByte(list, ','); j >= 0 {
				entry, list = list[j+1:], list[:j]
			} else {
				list = nil
			}
			a, err := netip.ParseAddr(string(ascii.TrimBlank(entry)))
			if err != nil {
				return peer
			}
			client = a.Unmap()
			if !p.trusts(client) {
				return client
			}
		}
	}
	return client
}

var headerXForwardedFor = "X-Forwarded-For"

// clientAddr is the request's client address (Proxies.client), as the
// refused-token budget counts it (clientKey) and the logs name it.
func (h *Handler) clientAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	peer, _ := netip.AddrFromSlice(ctx.RemoteIP())
	peer = peer.Unmap()
	if len(h.cfg.TrustedProxies) == 0 || !h.cfg.TrustedProxies.trusts(peer) {
		return peer
	}
	return h.cfg.TrustedProxies.client(peer, ctx.Request.Header.PeekAll(headerXForwardedFor))
}
