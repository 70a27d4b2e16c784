package ingest

import (
	"fmt"
	"testing"
)

// An intern table hands back equal strings, shares them once seen, and past
// its bound still answers correctly without growing.
func TestInternTableIsBoundedAndExact(t *testing.T) {
	tab := internTable{m: map[string]string{}, max: 3}
	for i := range 10 {
		want := fmt.Sprintf("hooks.acme.app-%d.hits", i)
		if got := tab.intern([]byte(want)); got != want {
			t.Fatalf("intern(%q) = %q", want, got)
		}
	}
	if len(tab.m) != 3 {
		t.Fatalf("table holds %d strings, want its bound 3", len(tab.m))
	}
	if got := tab.intern(nil); got != "" {
		t.Fatalf("intern(nil) = %q, want empty", got)
	}
	seen := []byte("hooks.acme.app-0.hits")
	if n := testing.AllocsPerRun(100, func() { _ = tab.intern(seen) }); n != 0 {
		t.Fatalf("interning a seen subject allocates %.0f times, want 0", n)
	}
}
