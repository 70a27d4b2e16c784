package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/bus"
	"github.com/hookgate/hookgate/internal/hgtest"
)

func credJSON(t testing.TB, id string, expires *time.Time) []byte {
	t.Helper()
	b, err := json.Marshal(auth.Credential{ID: id, Org: "acme", App: "web", Kind: auth.KindDeploy, Name: "n", Version: 1, CreatedAt: time.Now().UTC(), ExpiresAt: expires})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// gatedSource answers Get with a fixed entry, but only when released: it lets
// a test put a watch event between a fill's bucket read and its cache write.
type gatedSource struct {
	entry   jetstream.KeyValueEntry
	read    chan struct{} // closed when Get has read
	release chan struct{}
}

func (s *gatedSource) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	close(s.read)
	<-s.release
	return s.entry, nil
}

type entry struct {
	key   string
	value []byte
	rev   uint64
	op    jetstream.KeyValueOp
}

func (e entry) Bucket() string                  { return "b" }
func (e entry) Key() string                     { return e.key }
func (e entry) Value() []byte                   { return e.value }
func (e entry) Revision() uint64                { return e.rev }
func (e entry) Created() time.Time              { return time.Time{} }
func (e entry) Delta() uint64                   { return 0 }
func (e entry) Operation() jetstream.KeyValueOp { return e.op }

// A fill that read the credential before its delete was applied must not
// bring the token back, neither in its own answer nor in later lookups.
func TestFillRacingDeleteCannotResurrect(t *testing.T) {
	h := auth.HashToken([]byte("platform-token-0001"))
	src := &gatedSource{
		entry:   entry{key: auth.TokenKey(h), value: credJSON(t, "c1", nil), rev: 5, op: jetstream.KeyValuePut},
		read:    make(chan struct{}),
		release: make(chan struct{}),
	}
	now := time.Now()
	var clock atomic.Pointer[time.Time]
	clock.Store(&now)
	s, err := auth.NewStore(src, nil, auth.StoreConfig{Now: func() time.Time { return *clock.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	type result struct {
		cred *auth.Credential
		err  error
	}
	done := make(chan result)
	go func() {
		c, err := s.Lookup(context.Background(), h)
		done <- result{c, err}
	}()
	<-src.read
	s.Apply(auth.TokenKey(h), jetstream.KeyValueDelete, nil, 6) // the revoke, seen by the watch
	close(src.release)
	if r := <-done; !errors.Is(r.err, auth.ErrInvalidToken) {
		t.Fatalf("racing fill answered %v, %v; want ErrInvalidToken", r.cred, r.err)
	}
	for range 50 {
		if c, err := s.Lookup(context.Background(), h); !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("after delete: %v, %v", c, err)
		}
	}
	// Even once the event memory is gone, the cache holds no live entry.
	// Events are forgotten after a minute, by the next Apply.
	later := now.Add(2 * time.Minute)
	clock.Store(&later)
	s.Apply(auth.TokenKey(auth.HashToken([]byte("platform-token-other"))), jetstream.KeyValueDelete, nil, 7)
	s.WaitCache()
	if _, ok := s.Cached(h); ok {
		t.Fatal("revoked token still known valid")
	}
}

func TestExpiryIsEnforced(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var clock atomic.Pointer[time.Time]
	clock.Store(&now)
	s, err := auth.NewStore(nil, nil, auth.StoreConfig{Now: func() time.Time { return *clock.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := auth.HashToken([]byte("platform-token-0002"))
	exp := now.Add(time.Hour)
	s.Apply(auth.TokenKey(h), jetstream.KeyValuePut, credJSON(t, "c2", &exp), 1)
	if _, err := s.Lookup(context.Background(), h); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	later := exp
	clock.Store(&later)
	if _, err := s.Lookup(context.Background(), h); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("at expiry: %v", err)
	}
}

type countingObserver struct{ invalid, put, del atomic.Int64 }

func (o *countingObserver) CacheLookup(bool) {}
func (o *countingObserver) TokenEvent(op auth.EventOp) {
	switch op {
	case auth.EventInvalid:
		o.invalid.Add(1)
	case auth.EventPut:
		o.put.Add(1)
	case auth.EventDelete:
		o.del.Add(1)
	}
}

func TestGarbageRecordRevokesAndCounts(t *testing.T) {
	obs := &countingObserver{}
	s, err := auth.NewStore(nil, obs, auth.StoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := auth.HashToken([]byte("platform-token-0003"))
	s.Apply(auth.TokenKey(h), jetstream.KeyValuePut, credJSON(t, "c3", nil), 1)
	s.Apply(auth.TokenKey(h), jetstream.KeyValuePut, []byte(`{"id":"c3","org":"ACME.>","kind":"hits","version":1}`), 2)
	s.Apply("tok.not-a-hash", jetstream.KeyValuePut, credJSON(t, "c4", nil), 3)
	if _, err := s.Lookup(context.Background(), h); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("garbage record left token valid: %v", err)
	}
	if got := obs.invalid.Load(); got != 2 {
		t.Fatalf("invalid events = %d, want 2", got)
	}
}

// Many goroutines look tokens up (filling the cache from a real bucket) while
// the tokens are deleted. Once the watch has applied a token's delete, no
// lookup may succeed for it again.
func TestConcurrentFillsNeverUndoDeletes(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: races eight busy readers against 150 deletes through a real NATS")
	}
	srv := hgtest.RunNATS(t)
	_, js := hgtest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kv, err := bus.EnsureBucket(ctx, js, "race", 1)
	if err != nil {
		t.Fatal(err)
	}
	// Tiny TTL-free cache with a small size so fills, evictions and deletes interleave.
	s, err := auth.NewStore(kv, nil, auth.StoreConfig{MaxEntries: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	var deleted sync.Map // Hash -> struct{}: delete applied by the watch
	watchCtx, stopWatch := context.WithCancel(ctx)
	synced := make(chan struct{})
	var watchErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w, err := kv.Watch(watchCtx, auth.TokenKeyPrefix+"*")
		if err != nil {
			watchErr = err
			close(synced)
			return
		}
		defer w.Stop()
		for {
			select {
			case <-watchCtx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					// nats.go closes the updates once watchCtx ends, and
					// this select may see that first.
					return
				}
				if e == nil {
					close(synced)
					continue
				}
				s.Apply(e.Key(), e.Operation(), e.Value(), e.Revision())
				if e.Operation() != jetstream.KeyValuePut {
					h, _ := auth.ParseHash(e.Key()[len(auth.TokenKeyPrefix):])
					deleted.Store(h, struct{}{})
				}
			}
		}
	}()
	<-synced
	if watchErr != nil {
		t.Fatal(watchErr)
	}

	const tokens = 150
	hashes := make([]auth.Hash, tokens)
	for i := range hashes {
		hashes[i] = auth.HashToken(fmt.Appendf(nil, "race-token-%08d", i))
		if _, err := kv.Put(ctx, auth.TokenKey(hashes[i]), credJSON(t, fmt.Sprintf("c%d", i), nil)); err != nil {
			t.Fatal(err)
		}
	}
	var resurrected atomic.Int64
	stopReaders := make(chan struct{})
	var readers sync.WaitGroup
	for r := range 8 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for i := r; ; i = (i + 7) % tokens {
				select {
				case <-stopReaders:
					return
				default:
				}
				h := hashes[i]
				_, wasDeleted := deleted.Load(h) // before the lookup: the delete was applied
				_, err := s.Lookup(ctx, h)
				if wasDeleted && err == nil {
					resurrected.Add(1)
				}
			}
		}()
	}
	for i, h := range hashes {
		if err := kv.Delete(ctx, auth.TokenKey(h)); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			time.Sleep(time.Millisecond) // let fills race the deletes
		}
	}
	hgtest.WaitFor(t, 10*time.Second, func() error {
		n := 0
		deleted.Range(func(any, any) bool { n++; return true })
		if n < tokens {
			return fmt.Errorf("%d of %d deletes applied", n, tokens)
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond) // keep racing after the last delete
	close(stopReaders)
	readers.Wait()
	stopWatch()
	wg.Wait()
	if n := resurrected.Load(); n > 0 {
		t.Fatalf("%d lookups succeeded after their token's delete was applied", n)
	}
	for _, h := range hashes {
		if _, err := s.Lookup(ctx, h); !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("deleted token answered %v", err)
		}
	}
}

// countingSource serves a fixed entry and counts reads.
type countingSource struct {
	entry jetstream.KeyValueEntry
	reads atomic.Int64
}

func (s *countingSource) Get(context.Context, string) (jetstream.KeyValueEntry, error) {
	s.reads.Add(1)
	if s.entry == nil {
		return nil, jetstream.ErrKeyNotFound
	}
	return s.entry, nil
}

// While distrusted, nothing cached is served: every lookup asks the bucket,
// and what was cached before is not served after trust returns.
func TestDistrustReadsTheBucket(t *testing.T) {
	h := auth.HashToken([]byte("platform-token-0005"))
	src := &countingSource{entry: entry{key: auth.TokenKey(h), value: credJSON(t, "c5", nil), rev: 1, op: jetstream.KeyValuePut}}
	s, err := auth.NewStore(src, nil, auth.StoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Apply(auth.TokenKey(h), jetstream.KeyValuePut, credJSON(t, "c5", nil), 1)
	if _, err := s.Lookup(context.Background(), h); err != nil || src.reads.Load() != 0 {
		t.Fatalf("trusted lookup: %v, %d reads", err, src.reads.Load())
	}
	s.Distrust("test")
	src.entry = nil // revoked while the watch could not tell us
	for range 3 {
		if _, err := s.Lookup(context.Background(), h); !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("distrusted lookup served the cache: %v", err)
		}
	}
	if n := src.reads.Load(); n != 3 {
		t.Fatalf("%d bucket reads, want one per lookup", n)
	}
	if _, ok := s.Cached(h); ok {
		t.Fatal("Cached while distrusted")
	}
	// The watch catches up (a rename it had missed, at rev 3) and trust
	// returns: what was cached in the old epoch is not served, the bucket is
	// read once and its newer record wins over the older event.
	renamed := credJSON(t, "c5", nil)
	renamed = []byte(strings.Replace(string(renamed), `"version":1`, `"version":3`, 1))
	src.entry = entry{key: auth.TokenKey(h), value: renamed, rev: 3, op: jetstream.KeyValuePut}
	s.Trust()
	before := src.reads.Load()
	c, err := s.Lookup(context.Background(), h)
	if err != nil || c.Version != 3 {
		t.Fatalf("after trust: %+v, %v; want the bucket's version 3", c, err)
	}
	if src.reads.Load() != before+1 {
		t.Fatal("after trust the old epoch's cache answered")
	}
}

// A platform may write anything into the bucket: a bad record is refused and
// counted, never a crash, and never a credential with names unfit for a subject.
func FuzzStoreApply(f *testing.F) {
	h := auth.HashToken([]byte("platform-token-fuzz"))
	f.Add(auth.TokenKey(h), []byte(`{"id":"c1","org":"acme","app":"web","kind":"deploy","name":"n","version":1,"created_at":"2026-01-01T00:00:00Z","expires_at":null}`))
	f.Add(auth.TokenKey(h), []byte(`{"id":"c1","org":"acme.*","kind":"hits","version":1}`))
	f.Add("tok.zz", []byte(`{}`))
	f.Add("cred.c1", []byte(`garbage`))
	obs := &countingObserver{}
	s, err := auth.NewStore(&countingSource{}, obs, auth.StoreConfig{})
	if err != nil {
		f.Fatal(err)
	}
	rev := uint64(0)
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		rev++
		before := obs.invalid.Load() + obs.put.Load() + obs.del.Load()
		s.Apply(key, jetstream.KeyValuePut, value, rev)
		after := obs.invalid.Load() + obs.put.Load() + obs.del.Load()
		hexPart, isTok := strings.CutPrefix(key, auth.TokenKeyPrefix)
		if !isTok {
			return
		}
		if after != before+1 {
			t.Fatalf("event on %q not counted", key)
		}
		kh, err := auth.ParseHash(hexPart)
		if err != nil {
			return
		}
		c, err := s.Lookup(context.Background(), kh)
		if err != nil {
			return
		}
		if c.Validate() != nil {
			t.Fatalf("store serves an invalid credential %+v from %q", c, value)
		}
	})
}
