package auth

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/secretring"
)

// benchSource is an in-memory Source for micro benchmarks: a map of bucket
// keys to credential JSON, written before the benchmark and only read after.
type benchSource map[string][]byte

func (s benchSource) Get(_ context.Context, key string) (jetstream.KeyValueEntry, error) {
	v, ok := s[key]
	if !ok {
		return nil, jetstream.ErrKeyNotFound
	}
	return benchEntry{key: key, value: v}, nil
}

type benchEntry struct {
	key   string
	value []byte
}

func (e benchEntry) Bucket() string                  { return "hookgate-tokens" }
func (e benchEntry) Key() string                     { return e.key }
func (e benchEntry) Value() []byte                   { return e.value }
func (e benchEntry) Revision() uint64                { return 1 }
func (e benchEntry) Created() time.Time              { return time.Time{} }
func (e benchEntry) Delta() uint64                   { return 0 }
func (e benchEntry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }

// benchStore returns a store whose cache already holds a valid hits token,
// and that token.
func benchStore(b *testing.B) (*Store, []byte) {
	b.Helper()
	tok, err := NewToken(KindHits)
	if err != nil {
		b.Fatal(err)
	}
	cred := Credential{ID: "0123456789abcdef", Org: "acme", Kind: KindHits, Name: "bench", Version: 1, CreatedAt: time.Now().UTC()}
	data, err := json.Marshal(cred)
	if err != nil {
		b.Fatal(err)
	}
	h := HashToken([]byte(tok))
	s, err := NewStore(benchSource{TokenKey(h): data}, nil, StoreConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	// The first lookup misses and fills the cache; ristretto's Set is
	// asynchronous, so wait until the entry is really there.
	if _, err := s.Lookup(context.Background(), h); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, ok := s.Cached(h); !ok; _, ok = s.Cached(h) {
		if time.Now().After(deadline) {
			b.Fatal("the cache never took the credential")
		}
		s.cache.Wait()
		time.Sleep(time.Millisecond)
	}
	return s, []byte(tok)
}

// BenchmarkCheckTokenAndLookupHit is the per-request auth cost of a valid
// token already in the cache: format and checksum, SHA-256, cache hit.
func BenchmarkCheckTokenAndLookupHit(b *testing.B) {
	s, tok := benchStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := CheckToken(tok); err != nil {
			b.Fatal(err)
		}
		cred, err := s.Lookup(ctx, HashToken(tok))
		if err != nil || cred == nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckTokenAndLookupHitParallel is the same from every core at once.
func BenchmarkCheckTokenAndLookupHitParallel(b *testing.B) {
	s, tok := benchStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := CheckToken(tok); err != nil {
				b.Error(err)
				return
			}
			if _, err := s.Lookup(ctx, HashToken(tok)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkCheckToken is the format and checksum check alone.
func BenchmarkCheckToken(b *testing.B) {
	tok, err := NewToken(KindHits)
	if err != nil {
		b.Fatal(err)
	}
	t := []byte(tok)
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckToken(t); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHashToken is the SHA-256 of a token alone.
func BenchmarkHashToken(b *testing.B) {
	tok, err := NewToken(KindHits)
	if err != nil {
		b.Fatal(err)
	}
	t := []byte(tok)
	b.ReportAllocs()
	var h Hash
	for b.Loop() {
		h = HashToken(t)
	}
	_ = h
}

// BenchmarkLookupByIDHit is the per-request cost of finding a signed
// request's credential and its unsealed secret in memory.
func BenchmarkLookupByIDHit(b *testing.B) {
	ring, err := secretring.Parse([]byte("k1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"), "bench")
	if err != nil {
		b.Fatal(err)
	}
	tok, err := NewToken(KindHits)
	if err != nil {
		b.Fatal(err)
	}
	h := HashToken([]byte(tok))
	sealed, err := ring.Seal("0123456789abcdef", []byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
	if err != nil {
		b.Fatal(err)
	}
	cred := Credential{ID: "0123456789abcdef", Org: "acme", Kind: KindHits, Name: "bench", Version: 1, CreatedAt: time.Now().UTC(), Signing: &sealed}
	tokData, _ := json.Marshal(cred)
	recData, _ := json.Marshal(Record{Credential: cred, TokenSHA256: h.String()})
	s, err := NewStore(benchSource{TokenKey(h): tokData, CredentialKey(cred.ID): recData}, nil, StoreConfig{Unsealer: ring})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	id := []byte(cred.ID)
	ctx := context.Background()
	if _, err := s.LookupByID(ctx, id); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, ok := s.CachedByID(id); !ok; _, ok = s.CachedByID(id) {
		if time.Now().After(deadline) {
			b.Fatal("the cache never took the credential")
		}
		s.cache.Wait()
		time.Sleep(time.Millisecond)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if c, err := s.LookupByID(ctx, id); err != nil || len(c.Secrets) != 1 {
			b.Fatal(err)
		}
	}
}
