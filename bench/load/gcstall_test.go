package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseGCLine(t *testing.T) {
	seen := time.Unix(100, 0)
	g, ok := parseGCLine("gc 13 @19.421s 0%: 1.0+134+0.007 ms clock, 2.1+7.7/76/35+0.014 ms cpu, 310->317->82 MB, 318 MB goal, 0 MB stacks, 0 MB globals, 2 P", seen)
	if !ok {
		t.Fatal("gctrace line not recognised")
	}
	if want := seen.Add(-135007 * time.Microsecond); !g.start.Equal(want) || !g.end.Equal(seen) {
		t.Fatalf("cycle %v..%v, want %v..%v", g.start, g.end, want, seen)
	}
	for _, l := range []string{"gc 1 @0.1s", "time=x level=INFO msg=\"gc 1 @0.1s 0%: 1+1+1 ms clock\"", ""} {
		if _, ok := parseGCLine(l, seen); ok {
			t.Errorf("%q taken for a gctrace line", l)
		}
	}
}

func TestWithGCTrace(t *testing.T) {
	got := withGCTrace([]string{"A=1", "GODEBUG=madvdontneed=1", "B=2"})
	if !slices.Equal(got, []string{"A=1", "B=2", "GODEBUG=madvdontneed=1,gctrace=1"}) {
		t.Fatalf("got %q", got)
	}
	if got := withGCTrace([]string{"A=1"}); !slices.Equal(got, []string{"A=1", "GODEBUG=gctrace=1"}) {
		t.Fatalf("got %q", got)
	}
}

func TestGCNoteCountsSlowRequestsOverlappingACycle(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	gw := &child{gcs: []gcCycle{{at(100), at(200)}, {at(5000), at(5100)}}}
	brk := &child{gcs: []gcCycle{{at(300), at(340)}}}
	slow := []span{
		{at(90), at(101)},  // runs into the gateway's cycle
		{at(250), at(260)}, // between cycles
		{at(339), at(345)}, // in the broker's
	}
	note := gcNote(slow, at(0), at(1000), map[string]*child{"gateway": gw, "broker": brk})
	for _, want := range []string{"gateway 1 (longest 100ms)", "broker 1 (longest 40.00ms)", "3 requests over 5.00ms, 2 of them overlapping"} {
		if !strings.Contains(note, want) {
			t.Errorf("note %q lacks %q", note, want)
		}
	}
}

func TestSlowLogRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "slow")
	start := time.Unix(50, 0)
	if err := writeSlowLog(p, start, [][2]time.Duration{{time.Second, 7 * time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	got, err := readSlowLog(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[0].start.Equal(time.Unix(51, 0)) || got[0].end.Sub(got[0].start) != 7*time.Millisecond {
		t.Fatalf("got %+v", got)
	}
}
