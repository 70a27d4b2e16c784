package limit

import (
	"net/netip"
	"testing"
	"time"
)

func TestAllowBurstThenRate(t *testing.T) {
	tb := New[string](2, 3, 100)
	now := time.Unix(0, 0)
	for i := range 3 {
		if ok, _ := tb.Allow("a", now); !ok {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	ok, wait := tb.Allow("a", now)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("over the burst: ok=%v wait=%s, want refused and 500ms", ok, wait)
	}
	if ok, _ := tb.Allow("b", now); !ok {
		t.Fatal("another key shares the budget")
	}
	if ok, _ := tb.Allow("a", now.Add(500*time.Millisecond)); !ok {
		t.Fatal("refill at the rate did not happen")
	}
}

func TestOverAndSpend(t *testing.T) {
	tb := New[string](1, 2, 100)
	now := time.Unix(0, 0)
	if over, _ := tb.Over("x", now); over {
		t.Fatal("fresh key over")
	}
	tb.Spend("x", now)
	tb.Spend("x", now)
	over, wait := tb.Over("x", now)
	if !over || wait != time.Second {
		t.Fatalf("after the burst: over=%v wait=%s", over, wait)
	}
	if over, _ := tb.Over("x", now.Add(time.Second)); over {
		t.Fatal("still over after a refill")
	}
}

// An attacker with many addresses cannot grow the table without bound; a full
// table of busy limiters refuses rather than forgets a budget.
func TestMemoryIsBoundedAndFailsClosed(t *testing.T) {
	const max = 64
	tb := New[netip.Addr](1, 1, max)
	now := time.Unix(0, 0)
	refused := 0
	for i := range 10_000 {
		addr := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		tb.Spend(addr, now) // each address spends its whole burst
		if over, _ := tb.Over(addr, now); over {
			refused++
		}
	}
	if n := tb.Len(); n > max {
		t.Fatalf("table holds %d keys, cap %d", n, max)
	}
	if refused != 10_000 {
		t.Fatalf("%d of 10000 exhausted or unplaceable addresses refused; a full table must fail closed", refused)
	}
	// Once budgets refill, their limiters may be forgotten and new keys fit.
	later := now.Add(time.Minute)
	if ok, _ := tb.Allow(netip.MustParseAddr("192.0.2.1"), later); !ok {
		t.Fatal("a new key was refused after every budget refilled")
	}
}

func TestDisabled(t *testing.T) {
	tb := New[string](0, 0, 10)
	for range 100 {
		if ok, _ := tb.Allow("a", time.Now()); !ok {
			t.Fatal("a disabled table refused")
		}
	}
	if tb.Len() != 0 {
		t.Fatal("a disabled table holds keys")
	}
}
