package logsample

import (
	"testing"
	"time"
)

func TestAllowCountsWhatItRefused(t *testing.T) {
	s := New(1, 2) // a burst of 2, then one a second
	t0 := time.Now()
	for i := range 2 {
		if ok, left := s.allowAt(t0); !ok || left != 0 {
			t.Fatalf("line %d of the burst: %v, %d left out", i, ok, left)
		}
	}
	for range 5 {
		if ok, _ := s.allowAt(t0.Add(100 * time.Millisecond)); ok {
			t.Fatal("a line past the burst was allowed within the second")
		}
	}
	if ok, left := s.allowAt(t0.Add(1100 * time.Millisecond)); !ok || left != 5 {
		t.Fatalf("the line a second later: %v, %d left out; want true, 5", ok, left)
	}
	if ok, left := s.allowAt(t0.Add(2200 * time.Millisecond)); !ok || left != 0 {
		t.Fatalf("the next: %v, %d left out; want true, 0 (the count starts again)", ok, left)
	}
}
