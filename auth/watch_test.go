package auth_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/bus"
	"github.com/hookgate/hookgate/internal/hgtest"
)

// When the bucket's newest revisions are gone (a key deleted, then its
// history removed with PurgeDeletes, as a platform cleaning up does), no
// watch can ever deliver them. The store must still count as caught up once
// its watch has delivered the bucket's state, instead of distrusting itself
// and recreating the watch every check until the next write.
func TestWatchTrustsABucketWhoseLastRevisionsWerePurged(t *testing.T) {
	srv := hgtest.RunNATS(t)
	_, js := hgtest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := bus.EnsureBucket(ctx, js, "tokens-purged", 1)
	if err != nil {
		t.Fatal(err)
	}
	kept := auth.HashToken([]byte("platform-token-kept"))
	gone := auth.HashToken([]byte("platform-token-gone"))
	for _, h := range []auth.Hash{kept, gone} {
		if _, err := kv.Put(ctx, auth.TokenKey(h), credJSON(t, "c-"+h.String()[:6], nil)); err != nil {
			t.Fatal(err)
		}
	}
	if err := kv.Delete(ctx, auth.TokenKey(gone)); err != nil {
		t.Fatal(err)
	}
	if err := kv.PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(-1)); err != nil {
		t.Fatal(err)
	}

	var logs hgtest.LogBuffer
	s, err := auth.NewStore(kv, nil, auth.StoreConfig{StaleAfter: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	synced := make(chan struct{})
	watchCtx, stopWatch := context.WithCancel(ctx)
	done := make(chan error, 1)
	nc, _ := hgtest.Connect(t, srv.ClientURL())
	go func() {
		done <- s.Watch(watchCtx, kv, bus.KVNextRevision(nc, "tokens-purged"), func() { close(synced) })
	}()
	defer func() {
		stopWatch()
		if err := <-done; err != nil {
			t.Errorf("watch: %v", err)
		}
	}()
	select {
	case <-synced:
	case <-ctx.Done():
		t.Fatal("watch never synced")
	}

	// Ten freshness checks' worth: the store stays trusted throughout.
	deadline := time.Now().Add(10 * 50 * time.Millisecond)
	for time.Now().Before(deadline) {
		if !s.Trusted() {
			t.Fatalf("store distrusted with the watch current; log:\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := strings.Count(logs.String(), "distrusted"); n > 1 { // the one at watch start
		t.Fatalf("%d distrust events; log:\n%s", n, logs.String())
	}
	if _, err := s.Lookup(ctx, kept); err != nil {
		t.Fatalf("kept token: %v", err)
	}
	if _, err := s.Lookup(ctx, gone); err == nil {
		t.Fatal("purged token is valid")
	}
}

// scriptedKV is a bucket whose watch delivers a fixed script of events, as
// nats.go's watcher would, including the replays of an ordered consumer
// that was reset.
type scriptedKV struct {
	jetstream.KeyValue // only Bucket and WatchAll are used
	events             chan jetstream.KeyValueEntry
}

func (kv *scriptedKV) Bucket() string { return "scripted" }
func (kv *scriptedKV) WatchAll(context.Context, ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	return scriptedWatcher{kv.events}, nil
}

type scriptedWatcher struct{ c chan jetstream.KeyValueEntry }

func (w scriptedWatcher) Updates() <-chan jetstream.KeyValueEntry { return w.c }
func (w scriptedWatcher) Stop() error                             { return nil }

// A replayed old put (an ordered consumer restarted from an earlier
// sequence) must not bring back a token whose delete was already applied.
func TestWatchIgnoresReplayedRevisions(t *testing.T) {
	h := auth.HashToken([]byte("platform-token-replayed"))
	key := auth.TokenKey(h)
	src := &countingSource{} // the bucket: the token is gone
	obs := &countingObserver{}
	s, err := auth.NewStore(src, obs, auth.StoreConfig{StaleAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	kv := &scriptedKV{events: make(chan jetstream.KeyValueEntry, 8)}
	kv.events <- entry{key: key, value: credJSON(t, "c-replayed", nil), rev: 1, op: jetstream.KeyValuePut}
	kv.events <- nil // end of the initial state
	kv.events <- entry{key: key, rev: 2, op: jetstream.KeyValueDelete}
	kv.events <- entry{key: key, value: credJSON(t, "c-replayed", nil), rev: 1, op: jetstream.KeyValuePut} // replay
	kv.events <- entry{key: auth.TokenKey(auth.HashToken([]byte("platform-token-marker"))), rev: 3, op: jetstream.KeyValueDelete}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, kv, nil, nil) }()
	defer func() {
		cancel()
		<-done
	}()
	hgtest.WaitFor(t, 5*time.Second, func() error {
		if n := obs.del.Load(); n < 2 { // the delete at 2, the marker at 3
			return fmt.Errorf("watch applied %d of the 2 deletes", n)
		}
		return nil
	})
	if n := obs.put.Load(); n != 1 {
		t.Fatalf("%d puts applied, want 1: the replayed put was applied", n)
	}
	if !s.Trusted() {
		t.Fatal("store not trusted: the test would not look at the cache")
	}
	if _, err := s.Lookup(context.Background(), h); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("revoked token after a replayed put: %v, want ErrInvalidToken", err)
	}
}
