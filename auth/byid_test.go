package auth_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/secretring"
)

// testRing returns a ring of the given key ids, in that order; a key is 32
// bytes of its id's last character, so that one id is one key in every ring.
func testRing(t testing.TB, ids ...string) *secretring.Ring {
	t.Helper()
	var text string
	for _, id := range ids {
		text += id + " " + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{id[len(id)-1]}, 32)) + "\n"
	}
	r, err := secretring.Parse([]byte(text), "test ring")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// countingUnsealer counts unseals.
type countingUnsealer struct {
	u auth.Unsealer
	n atomic.Int64
}

func (c *countingUnsealer) Unseal(id string, s auth.SealedSecret) ([]byte, error) {
	c.n.Add(1)
	return c.u.Unseal(id, s)
}

// mapSource is a bucket in memory that counts reads; set and del change it.
type mapSource struct {
	mu    sync.Mutex
	m     map[string]entry
	rev   uint64
	reads atomic.Int64
}

func newMapSource() *mapSource { return &mapSource{m: map[string]entry{}} }

func (s *mapSource) Get(_ context.Context, key string) (jetstream.KeyValueEntry, error) {
	s.reads.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if !ok {
		return nil, jetstream.ErrKeyNotFound
	}
	return e, nil
}

// set writes key and returns its revision, for Apply.
func (s *mapSource) set(key string, value []byte) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	s.m[key] = entry{key: key, value: value, rev: s.rev, op: jetstream.KeyValuePut}
	return s.rev
}

func (s *mapSource) del(key string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	delete(s.m, key)
	return s.rev
}

// signingCred is one credential with a token and a signing secret, written
// to a mapSource (and applied to stores as a watch would).
type signingCred struct {
	id     string
	token  auth.Hash
	secret string
	rec    auth.Record
}

func newSigningCred(t testing.TB, ring auth.Sealer, id, secret string, expires *time.Time) *signingCred {
	t.Helper()
	sealed, err := ring.Seal(id, []byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	c := &signingCred{id: id, token: auth.HashToken([]byte("platform-token-" + id)), secret: secret}
	c.rec = auth.Record{
		Credential:  auth.Credential{ID: id, Org: "acme", App: "web", Kind: auth.KindDeploy, Name: "n", Version: 1, CreatedAt: time.Now().UTC(), ExpiresAt: expires, Signing: &sealed},
		TokenSHA256: c.token.String(),
	}
	return c
}

func (c *signingCred) tokJSON(t testing.TB) []byte {
	t.Helper()
	b, err := json.Marshal(c.rec.Credential)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (c *signingCred) recJSON(t testing.TB) []byte {
	t.Helper()
	b, err := json.Marshal(c.rec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// write puts both records in src and, when stores are given, applies them.
func (c *signingCred) write(t testing.TB, src *mapSource, stores ...*auth.Store) {
	t.Helper()
	for _, kv := range []struct {
		key   string
		value []byte
	}{{auth.TokenKey(c.token), c.tokJSON(t)}, {auth.CredentialKey(c.id), c.recJSON(t)}} {
		rev := src.set(kv.key, kv.value)
		for _, s := range stores {
			s.Apply(kv.key, jetstream.KeyValuePut, kv.value, rev)
		}
	}
}

type testClock struct{ p atomic.Pointer[time.Time] }

func newClock(t time.Time) *testClock { c := &testClock{}; c.set(t); return c }
func (c *testClock) set(t time.Time)  { c.p.Store(&t) }
func (c *testClock) now() time.Time   { return *c.p.Load() }

func secretsOf(c *auth.Credential) []string {
	var out []string
	for _, s := range c.Secrets {
		out = append(out, string(s))
	}
	return out
}

// A warm signed request reads no bucket key and unseals nothing, from the
// event memory and from the cache alike, and allocates nothing.
func TestLookupByIDWarmCostsNoReadNoUnseal(t *testing.T) {
	ring := testRing(t, "k1")
	unseal := &countingUnsealer{u: ring}
	clock := newClock(time.Now())
	src := newMapSource()
	s, err := auth.NewStore(src, nil, auth.StoreConfig{Unsealer: unseal, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := newSigningCred(t, ring, "cred-warm", "whsec_"+base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")), nil)
	c.write(t, src, s)
	if n := unseal.n.Load(); n != 1 {
		t.Fatalf("applying the record unsealed %d times, want 1", n)
	}
	check := func(when string) {
		t.Helper()
		got, err := s.LookupByID(context.Background(), []byte(c.id))
		if err != nil || len(got.Secrets) != 1 || string(got.Secrets[0]) != c.secret || got.ID != c.id || got.Org != "acme" {
			t.Fatalf("%s: LookupByID = %+v, %v", when, got, err)
		}
	}
	for range 10 {
		check("from the event memory")
	}
	if !knownID(s, []byte(c.id)) {
		t.Fatal("known false for a credential in memory")
	}
	// Events are forgotten after a minute (by the next Apply); the cache
	// then answers alone.
	clock.set(clock.now().Add(2 * time.Minute))
	s.Apply(auth.TokenKey(auth.HashToken([]byte("platform-token-other"))), jetstream.KeyValueDelete, nil, 100)
	s.WaitCache()
	for range 10 {
		check("from the cache")
	}
	if r, u := src.reads.Load(), unseal.n.Load(); r != 0 || u != 1 {
		t.Fatalf("warm lookups read the bucket %d times and unsealed %d times, want 0 and 1", r, u)
	}
	if raceEnabled {
		return
	}
	ctx := context.Background()
	id := []byte(c.id)
	if a := testing.AllocsPerRun(100, func() {
		if _, err := s.LookupByID(ctx, id); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("a warm LookupByID allocates %v times", a)
	}
	if a := testing.AllocsPerRun(100, func() {
		if _, ok := s.CachedByID(id); !ok {
			t.Fatal("CachedByID missed a warm credential")
		}
	}); a != 0 {
		t.Fatalf("a warm CachedByID allocates %v times", a)
	}
}

// A miss reads cred.<id> and the token's key once; then memory answers.
func TestLookupByIDMissFillsOnce(t *testing.T) {
	ring := testRing(t, "k1")
	unseal := &countingUnsealer{u: ring}
	src := newMapSource()
	s, err := auth.NewStore(src, nil, auth.StoreConfig{Unsealer: unseal})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := newSigningCred(t, ring, "cred-miss", "a-sender-generated-secret", nil)
	c.write(t, src) // in the bucket, no event seen
	if knownID(s, []byte(c.id)) {
		t.Fatal("known before any lookup")
	}
	if got, err := s.LookupByID(context.Background(), []byte(c.id)); err != nil || string(got.Secrets[0]) != c.secret {
		t.Fatalf("first lookup: %+v, %v", got, err)
	}
	if n := src.reads.Load(); n != 2 {
		t.Fatalf("first lookup read %d keys, want cred.<id> and tok.<hash>", n)
	}
	s.WaitCache()
	for range 5 {
		if _, err := s.LookupByID(context.Background(), []byte(c.id)); err != nil {
			t.Fatal(err)
		}
	}
	if r, u := src.reads.Load(), unseal.n.Load(); r != 2 || u != 1 {
		t.Fatalf("after the fill: %d reads, %d unseals; want 2 and 1", r, u)
	}
	if !knownID(s, []byte(c.id)) {
		t.Fatal("known false after the fill")
	}
}

// Every way a credential cannot verify a signature is the same error.
func TestLookupByIDRefuses(t *testing.T) {
	ring := testRing(t, "k1")
	past := time.Now().Add(-time.Hour)
	tests := []struct {
		name     string
		id       string
		unsealer auth.Unsealer
		setup    func(t *testing.T, src *mapSource)
	}{
		{"unknown id", "nobody", ring, func(*testing.T, *mapSource) {}},
		{"not an id", "a.b", ring, func(*testing.T, *mapSource) {}},
		{"empty id", "", ring, func(*testing.T, *mapSource) {}},
		{"no signing secret", "c1", ring, func(t *testing.T, src *mapSource) {
			c := newSigningCred(t, ring, "c1", "s", nil)
			c.rec.Signing = nil
			c.write(t, src)
		}},
		{"record of another id", "c1", ring, func(t *testing.T, src *mapSource) {
			c := newSigningCred(t, ring, "c2", "s", nil)
			src.set(auth.CredentialKey("c1"), c.recJSON(t))
			src.set(auth.TokenKey(c.token), c.tokJSON(t))
		}},
		{"sealed for another id", "c1", ring, func(t *testing.T, src *mapSource) {
			c := newSigningCred(t, ring, "c1", "s", nil)
			other, _ := ring.Seal("c2", []byte("s"))
			c.rec.Signing = &other
			c.write(t, src)
		}},
		{"expired", "c1", ring, func(t *testing.T, src *mapSource) {
			newSigningCred(t, ring, "c1", "s", &past).write(t, src)
		}},
		{"token revoked", "c1", ring, func(t *testing.T, src *mapSource) {
			c := newSigningCred(t, ring, "c1", "s", nil)
			c.write(t, src)
			src.del(auth.TokenKey(c.token))
		}},
		{"token of another credential", "c1", ring, func(t *testing.T, src *mapSource) {
			c := newSigningCred(t, ring, "c1", "s", nil)
			c.write(t, src)
			other := newSigningCred(t, ring, "c2", "s", nil)
			src.set(auth.TokenKey(c.token), other.tokJSON(t))
		}},
		{"token of another application", "c1", ring, func(t *testing.T, src *mapSource) {
			c := newSigningCred(t, ring, "c1", "s", nil)
			c.write(t, src)
			c.rec.App = "other"
			src.set(auth.TokenKey(c.token), c.tokJSON(t))
		}},
		{"token key not a credential", "c1", ring, func(t *testing.T, src *mapSource) {
			c := newSigningCred(t, ring, "c1", "s", nil)
			c.write(t, src)
			src.set(auth.TokenKey(c.token), []byte(`{"id":"c1","org":"ACME.>","kind":"hits"}`))
		}},
		{"bad token hash in the record", "c1", ring, func(t *testing.T, src *mapSource) {
			c := newSigningCred(t, ring, "c1", "s", nil)
			c.rec.TokenSHA256 = "nope"
			c.write(t, src)
		}},
		{"garbage record", "c1", ring, func(t *testing.T, src *mapSource) {
			src.set(auth.CredentialKey("c1"), []byte(`{"id":"c1","signing":"x"}`))
		}},
		{"key not in the ring", "c1", testRing(t, "k2"), func(t *testing.T, src *mapSource) {
			newSigningCred(t, ring, "c1", "s", nil).write(t, src)
		}},
		{"no ring", "c1", nil, func(t *testing.T, src *mapSource) {
			newSigningCred(t, ring, "c1", "s", nil).write(t, src)
		}},
		{"nil ring file", "c1", (*secretring.File)(nil), func(t *testing.T, src *mapSource) {
			newSigningCred(t, ring, "c1", "s", nil).write(t, src)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newMapSource()
			tt.setup(t, src)
			s, err := auth.NewStore(src, nil, auth.StoreConfig{Unsealer: tt.unsealer})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			// Through a fill, then through the events a watch would apply.
			if got, err := s.LookupByID(context.Background(), []byte(tt.id)); !errors.Is(err, auth.ErrInvalidSigningCredential) {
				t.Fatalf("after a fill: %+v, %v", got, err)
			}
			for _, e := range src.m {
				s.Apply(e.key, e.op, e.value, e.rev)
			}
			if got, err := s.LookupByID(context.Background(), []byte(tt.id)); !errors.Is(err, auth.ErrInvalidSigningCredential) {
				t.Fatalf("after the events: %+v, %v", got, err)
			}
			if knownID(s, []byte(tt.id)) {
				t.Fatal("known true")
			}
		})
	}
}

// gatedCredSource serves a fixed cred.<id> entry once released, and every
// other key from a map.
type gatedCredSource struct {
	*mapSource
	cred    jetstream.KeyValueEntry
	read    chan struct{}
	release chan struct{}
}

func (s *gatedCredSource) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if key == s.cred.Key() {
		close(s.read)
		<-s.release
		return s.cred, nil
	}
	return s.mapSource.Get(ctx, key)
}

// A fill that read cred.<id> before its delete was applied must not bring
// the credential back, even with its token key left in place (a platform
// that deletes cred.<id> only).
func TestLookupByIDFillRacingDeleteCannotResurrect(t *testing.T) {
	ring := testRing(t, "k1")
	c := newSigningCred(t, ring, "cred-race", "s", nil)
	inner := newMapSource()
	inner.set(auth.TokenKey(c.token), c.tokJSON(t))
	src := &gatedCredSource{mapSource: inner, cred: entry{key: auth.CredentialKey(c.id), value: c.recJSON(t), rev: 5, op: jetstream.KeyValuePut},
		read: make(chan struct{}), release: make(chan struct{})}
	clock := newClock(time.Now())
	s, err := auth.NewStore(src, nil, auth.StoreConfig{Unsealer: ring, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	done := make(chan error)
	go func() {
		_, err := s.LookupByID(context.Background(), []byte(c.id))
		done <- err
	}()
	<-src.read
	s.Apply(auth.CredentialKey(c.id), jetstream.KeyValueDelete, nil, 6)
	close(src.release)
	if err := <-done; !errors.Is(err, auth.ErrInvalidSigningCredential) {
		t.Fatalf("racing fill answered %v", err)
	}
	clock.set(clock.now().Add(2 * time.Minute))
	s.Apply(auth.TokenKey(auth.HashToken([]byte("platform-token-other"))), jetstream.KeyValueDelete, nil, 7)
	s.WaitCache()
	if knownID(s, []byte(c.id)) {
		t.Fatal("deleted credential known after its event was forgotten")
	}
}

// A token in its grace period signs with its old secret until the end, by
// the store's clock, with no event.
func TestGraceSecretEndsByClock(t *testing.T) {
	ring := testRing(t, "k1")
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := newClock(t0)
	src := newMapSource()
	s, err := auth.NewStore(src, nil, auth.StoreConfig{Unsealer: ring, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	end := t0.Add(2 * time.Second)
	old := newSigningCred(t, ring, "cred-grace", "old-secret", nil)
	old.rec.ExpiresAt = &end // the old token's record, kept until the end
	cur := newSigningCred(t, ring, "cred-grace", "new-secret", nil)
	cur.token = auth.HashToken([]byte("platform-token-new"))
	cur.rec.TokenSHA256, cur.rec.Version = cur.token.String(), 2
	cur.rec.Previous = []auth.Previous{{Version: 1, Name: "n", TokenSHA256: old.token.String(), Signing: old.rec.Signing, ExpiresAt: end}}
	for _, kv := range []struct {
		key string
		v   []byte
	}{{auth.TokenKey(old.token), old.tokJSON(t)}, {auth.TokenKey(cur.token), cur.tokJSON(t)}, {auth.CredentialKey(cur.id), cur.recJSON(t)}} {
		s.Apply(kv.key, jetstream.KeyValuePut, kv.v, src.set(kv.key, kv.v))
	}
	lookup := func() []string {
		t.Helper()
		got, err := s.LookupByID(context.Background(), []byte(cur.id))
		if err != nil {
			t.Fatal(err)
		}
		// Memory holds every record: it alone gives the same answer.
		if cached, ok := s.CachedByID([]byte(cur.id)); !ok || cached != got {
			t.Fatalf("CachedByID = %p, %v; want LookupByID's %p (secrets %q)", cached, ok, got, secretsOf(got))
		}
		return secretsOf(got)
	}
	clock.set(end.Add(-time.Millisecond))
	if got := lookup(); len(got) != 2 || got[0] != "new-secret" || got[1] != "old-secret" {
		t.Fatalf("in the grace period: secrets %q, want the new one, then the old one", got)
	}
	if _, err := s.Lookup(context.Background(), old.token); err != nil {
		t.Fatalf("old token in the grace period: %v", err)
	}
	clock.set(end)
	if got := lookup(); len(got) != 1 || got[0] != "new-secret" {
		t.Fatalf("at the end: secrets %q, want the new one only", got)
	}
	if _, err := s.Lookup(context.Background(), old.token); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("old token at the end: %v", err)
	}
	// Deleting the old token key ends its secret's grace too.
	clock.set(end.Add(-time.Second))
	if got := lookup(); len(got) != 2 {
		t.Fatalf("secrets %q", got)
	}
	s.Apply(auth.TokenKey(old.token), jetstream.KeyValueDelete, nil, src.del(auth.TokenKey(old.token)))
	if got := lookup(); len(got) != 1 {
		t.Fatalf("after the old token's delete: secrets %q", got)
	}
	if src.reads.Load() != 0 {
		t.Fatal("the grace check read the bucket")
	}
}

// A record that did not unseal (its key not yet in this gateway's ring) is
// tried again once the ring is re-read, without a bucket read.
func TestUnsealRetriedAfterRingReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), secretring.FileName)
	k2 := "k2 " + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32)) + "\n"
	k1 := "k1 " + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)) + "\n"
	if err := os.WriteFile(path, []byte(k1), 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := secretring.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	src := newMapSource()
	s, err := auth.NewStore(src, nil, auth.StoreConfig{Unsealer: file})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	newRing, err := secretring.Parse([]byte(k2+k1), "new")
	if err != nil {
		t.Fatal(err)
	}
	c := newSigningCred(t, newRing, "cred-reload", "s", nil) // sealed under k2
	c.write(t, src, s)
	if _, err := s.LookupByID(context.Background(), []byte(c.id)); !errors.Is(err, auth.ErrInvalidSigningCredential) {
		t.Fatalf("before the reload: %v", err)
	}
	if err := os.WriteFile(path, []byte(k2+k1), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := file.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LookupByID(context.Background(), []byte(c.id)); err != nil || string(got.Secrets[0]) != "s" {
		t.Fatalf("after the reload: %+v, %v", got, err)
	}
	if n := src.reads.Load(); n != 0 {
		t.Fatalf("%d bucket reads", n)
	}
}

// While distrusted, a lookup by id reads the record every time, and a
// credential removed meanwhile is refused.
func TestLookupByIDDistrustedReadsTheBucket(t *testing.T) {
	ring := testRing(t, "k1")
	src := newMapSource()
	s, err := auth.NewStore(src, nil, auth.StoreConfig{Unsealer: ring})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := newSigningCred(t, ring, "cred-distrust", "s", nil)
	c.write(t, src, s)
	s.Distrust("test")
	if knownID(s, []byte(c.id)) {
		t.Fatal("known while distrusted")
	}
	for i := range 3 {
		if _, err := s.LookupByID(context.Background(), []byte(c.id)); err != nil {
			t.Fatal(err)
		}
		if n := src.reads.Load(); n != int64(2*(i+1)) {
			t.Fatalf("lookup %d: %d reads, want cred.<id> and tok. each time", i, n)
		}
	}
	src.del(auth.CredentialKey(c.id)) // revoked while the watch could not tell us
	if _, err := s.LookupByID(context.Background(), []byte(c.id)); !errors.Is(err, auth.ErrInvalidSigningCredential) {
		t.Fatalf("distrusted lookup served memory: %v", err)
	}
}

// knownID says whether memory alone holds id as a valid signing credential.
func knownID(s *auth.Store, id []byte) bool {
	_, ok := s.CachedByID(id)
	return ok
}
