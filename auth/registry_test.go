package auth_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/bus"
	"github.com/hookgate/hookgate/internal/hgtest"
)

// testBucket is a credentials bucket on a fresh NATS server: as serve makes
// it, or (perKeyTTL) with LimitMarkerTTL set, so that records can expire.
type testBucket struct {
	name string
	kv   jetstream.KeyValue
	js   jetstream.JetStream
	nc   *nats.Conn
}

func newTestBucket(t *testing.T, perKeyTTL bool) *testBucket {
	t.Helper()
	srv := hgtest.RunNATS(t)
	nc, js := hgtest.Connect(t, srv.ClientURL())
	b := &testBucket{name: "hookgate-tokens", js: js, nc: nc}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	if perKeyTTL {
		b.kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: b.name, History: 1, Storage: jetstream.FileStorage, LimitMarkerTTL: time.Second})
	} else {
		b.kv, err = bus.EnsureBucket(ctx, js, b.name, 1)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// store starts a store watching the bucket, as a gateway does, and waits
// for its first sync.
func (b *testBucket) store(t *testing.T, obs auth.Observer, cfg auth.StoreConfig) *auth.Store {
	t.Helper()
	s, err := auth.NewStore(b.kv, obs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	synced := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, b.kv, bus.KVNextRevision(b.nc, b.name), func() { close(synced) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watch: %v", err)
		}
		s.Close()
	})
	select {
	case <-synced:
	case err := <-done:
		t.Fatalf("watch ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("watch never synced")
	}
	return s
}

// raw returns every key of the bucket with its value.
func (b *testBucket) raw(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	keys, err := b.kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys.Keys() {
		e, err := b.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out[k] = string(e.Value())
	}
	return out
}

func (b *testBucket) record(t *testing.T, id string) auth.Record {
	t.Helper()
	e, err := b.kv.Get(context.Background(), auth.CredentialKey(id))
	if err != nil {
		t.Fatal(err)
	}
	var rec auth.Record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

// waitSecrets waits until the store finds id with exactly these secrets.
func waitSecrets(t *testing.T, s *auth.Store, id string, want ...string) {
	t.Helper()
	hgtest.WaitFor(t, 5*time.Second, func() error {
		c, err := s.LookupByID(context.Background(), []byte(id))
		if err != nil {
			if len(want) == 0 && errors.Is(err, auth.ErrInvalidSigningCredential) {
				return nil
			}
			return err
		}
		if got := secretsOf(c); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("secrets %q, want %q", got, want)
		}
		return nil
	})
}

func tokenHash(is auth.Issued) auth.Hash { return auth.HashToken([]byte(is.Token)) }

// The generated secret is returned once and the bucket holds it only
// sealed: no record has it, or its base64 part, in the clear.
func TestIssueSigningSealsTheSecret(t *testing.T) {
	b := newTestBucket(t, false)
	ring := testRing(t, "k1")
	reg := &auth.Registry{KV: b.kv, Sealer: ring}
	ctx := context.Background()
	is, err := reg.Issue(ctx, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "github", Signing: true})
	if err != nil {
		t.Fatal(err)
	}
	raw, ok := strings.CutPrefix(is.SigningSecret, "whsec_")
	key, err := base64.StdEncoding.DecodeString(raw)
	if !ok || err != nil || len(key) != 32 {
		t.Fatalf("signing secret %q: want whsec_ and the standard base64 of 32 bytes", is.SigningSecret)
	}
	values := b.raw(t)
	if len(values) != 2 {
		t.Fatalf("bucket holds %v", values)
	}
	for k, v := range values {
		if strings.Contains(v, "whsec_") || strings.Contains(v, raw) || strings.Contains(v, raw[:20]) {
			t.Fatalf("%s holds the signing secret in the clear: %s", k, v)
		}
		if !strings.Contains(v, `"signing":{"key":"k1","sealed":"`) {
			t.Fatalf("%s has no sealed signing secret: %s", k, v)
		}
	}
	rec := b.record(t, is.ID)
	if got, err := ring.Unseal(is.ID, *rec.Signing); err != nil || string(got) != is.SigningSecret {
		t.Fatalf("the record's seal opens to %q, %v", got, err)
	}
	s := b.store(t, nil, auth.StoreConfig{Unsealer: ring})
	waitSecrets(t, s, is.ID, is.SigningSecret)

	// Imported: trimmed, never returned.
	imp, err := reg.Issue(ctx, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "gitlab", SigningSecret: []byte("  a-secret-gitlab-made\n")})
	if err != nil || imp.SigningSecret != "" {
		t.Fatalf("import: %q, %v", imp.SigningSecret, err)
	}
	waitSecrets(t, s, imp.ID, "a-secret-gitlab-made")
	// A credential without a signing secret has no signing field, and
	// signs nothing.
	plain, err := reg.Issue(ctx, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "plain"})
	if err != nil {
		t.Fatal(err)
	}
	if v := b.raw(t)[auth.CredentialKey(plain.ID)]; strings.Contains(v, "signing") {
		t.Fatalf("record without a secret: %s", v)
	}
	waitSecrets(t, s, plain.ID)

	for _, tt := range []struct {
		name string
		reg  *auth.Registry
		req  auth.IssueRequest
		want string
	}{
		{"both", reg, auth.IssueRequest{Signing: true, SigningSecret: []byte("x")}, "not both"},
		{"bad whsec", reg, auth.IssueRequest{SigningSecret: []byte("whsec_not base64!")}, "not standard base64"},
		{"empty whsec", reg, auth.IssueRequest{SigningSecret: []byte("whsec_")}, "not standard base64"},
		{"blank file", reg, auth.IssueRequest{SigningSecret: []byte(" \n\t")}, "empty"},
		{"no ring", &auth.Registry{KV: b.kv}, auth.IssueRequest{Signing: true}, "no key ring"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Org, tt.req.Kind, tt.req.Name = "acme", auth.KindHits, "n"
			if _, err := tt.reg.Issue(ctx, tt.req); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Issue = %v, want an error with %q", err, tt.want)
			}
		})
	}
	if n := len(b.raw(t)); n != 6 {
		t.Fatalf("failed issues left records: %d keys", n)
	}
	// A rotation that must seal and cannot changes nothing.
	if _, err := (&auth.Registry{KV: b.kv}).Rotate(ctx, is.ID); !errors.Is(err, auth.ErrNoKeyRing) {
		t.Fatalf("rotate without a ring: %v", err)
	}
	if rec := b.record(t, is.ID); rec.Version != 1 {
		t.Fatalf("failed rotation changed the record: %+v", rec)
	}
}

// Revoking a credential refuses its signatures on every gateway as fast as
// its token, whichever key goes first: the registry's revoke, a platform
// deleting the tok. key, or one deleting cred.<id>.
func TestRevokeRefusesByIDOnEveryGateway(t *testing.T) {
	b := newTestBucket(t, false)
	ring := testRing(t, "k1")
	reg := &auth.Registry{KV: b.kv, Sealer: ring}
	ctx := context.Background()
	stores := []*auth.Store{b.store(t, nil, auth.StoreConfig{Unsealer: ring}), b.store(t, nil, auth.StoreConfig{Unsealer: ring})}
	revokes := map[string]func(is auth.Issued) error{
		"registry revoke": func(is auth.Issued) error { return reg.Revoke(ctx, is.ID) },
		"token key deleted": func(is auth.Issued) error {
			return b.kv.Delete(ctx, auth.TokenKey(tokenHash(is)))
		},
		"record deleted": func(is auth.Issued) error { return b.kv.Delete(ctx, auth.CredentialKey(is.ID)) },
	}
	for name, revoke := range revokes {
		t.Run(name, func(t *testing.T) {
			is, err := reg.Issue(ctx, auth.IssueRequest{Org: "acme", Kind: auth.KindDeploy, App: "web", Name: name, Signing: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range stores {
				waitSecrets(t, s, is.ID, is.SigningSecret)
				hgtest.WaitFor(t, 5*time.Second, func() error {
					if s.WaitCache(); !knownID(s, []byte(is.ID)) {
						return errors.New("not known in memory yet")
					}
					return nil
				})
			}
			if err := revoke(is); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			for i, s := range stores {
				hgtest.WaitFor(t, time.Second, func() error {
					if _, err := s.LookupByID(ctx, []byte(is.ID)); !errors.Is(err, auth.ErrInvalidSigningCredential) {
						return fmt.Errorf("gateway %d still finds the credential: %v", i, err)
					}
					return nil
				})
				if knownID(s, []byte(is.ID)) {
					t.Fatalf("gateway %d: known after the revoke", i)
				}
			}
			t.Logf("refused on both gateways %s after the revoke", time.Since(start))
		})
	}
}

// Rotation with a grace period keeps the old token and secret working
// beside the new ones until its end, by each gateway's clock; list shows the
// old version; the next sweep removes it.
func TestRotateWithGrace(t *testing.T) {
	b := newTestBucket(t, false)
	ring := testRing(t, "k1")
	clock := newClock(time.Now())
	reg := &auth.Registry{KV: b.kv, Sealer: ring, Now: clock.now}
	s := b.store(t, nil, auth.StoreConfig{Unsealer: ring, Now: clock.now})
	ctx := context.Background()
	is, err := reg.Issue(ctx, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "github", Signing: true})
	if err != nil {
		t.Fatal(err)
	}
	rot, err := reg.Reissue(ctx, is.ID, auth.ReissueRequest{Grace: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if rot.Version != 2 || rot.SigningSecret == "" || rot.SigningSecret == is.SigningSecret || rot.GraceEnds == nil {
		t.Fatalf("rotated %+v", rot)
	}
	if end := *rot.GraceEnds; end.Before(clock.now().Add(2*time.Second)) || end.After(clock.now().Add(3*time.Second)) || !end.Equal(end.Truncate(time.Second)) {
		t.Fatalf("grace ends %s, want the whole second at or after now+2s (%s)", end, clock.now())
	}
	waitSecrets(t, s, is.ID, rot.SigningSecret, is.SigningSecret)
	for _, tok := range []auth.Issued{is, rot} {
		if _, err := s.Lookup(ctx, tokenHash(tok)); err != nil {
			t.Fatalf("version %d's token in the grace period: %v", tok.Version, err)
		}
	}
	list, err := reg.List(ctx, "acme")
	if err != nil || len(list) != 2 || list[0].Version != 2 || list[0].ExpiresAt != nil ||
		list[1].Version != 1 || list[1].ExpiresAt == nil || !list[1].ExpiresAt.Equal(*rot.GraceEnds) {
		t.Fatalf("list in the grace period: %+v, %v", list, err)
	}

	clock.set(*rot.GraceEnds) // no event: the clock alone ends it
	waitSecrets(t, s, is.ID, rot.SigningSecret)
	if _, err := s.Lookup(ctx, tokenHash(is)); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("old token after the grace: %v", err)
	}
	if _, err := s.Lookup(ctx, tokenHash(rot)); err != nil {
		t.Fatalf("new token after the grace: %v", err)
	}
	if list, _ := reg.List(ctx, ""); len(list) != 1 {
		t.Fatalf("list after the grace: %+v", list)
	}
	// The old tok. key is still in the bucket, until a sweep.
	if _, ok := b.raw(t)[auth.TokenKey(tokenHash(is))]; !ok {
		t.Fatal("the old token key went before a sweep")
	}
	if n, err := reg.Sweep(ctx); n != 1 || err != nil {
		t.Fatalf("Sweep = %d, %v; want 1", n, err)
	}
	if _, ok := b.raw(t)[auth.TokenKey(tokenHash(is))]; ok {
		t.Fatal("the sweep left the old token key")
	}
	if rec := b.record(t, is.ID); len(rec.Previous) != 0 || rec.Version != 2 {
		t.Fatalf("record after the sweep: %+v", rec)
	}
	if n, err := reg.Sweep(ctx); n != 0 || err != nil {
		t.Fatalf("second Sweep = %d, %v", n, err)
	}
}

// Revoke ends a grace period; a rotation without grace ends the earlier
// ones; a rename keeps the old name on the old version; an expired
// credential is not rotated.
func TestGraceEndsEarly(t *testing.T) {
	b := newTestBucket(t, false)
	ring := testRing(t, "k1")
	reg := &auth.Registry{KV: b.kv, Sealer: ring}
	s := b.store(t, nil, auth.StoreConfig{Unsealer: ring})
	ctx := context.Background()

	v1, err := reg.Issue(ctx, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "one", Signing: true})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := reg.Reissue(ctx, v1.ID, auth.ReissueRequest{Name: "two", Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	v3, err := reg.Reissue(ctx, v1.ID, auth.ReissueRequest{Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	waitSecrets(t, s, v1.ID, v3.SigningSecret, v2.SigningSecret, v1.SigningSecret)
	list, err := reg.List(ctx, "")
	if err != nil || len(list) != 3 || list[0].Name != "one" || list[0].Version != 1 || list[1].Name != "two" || list[1].Version != 3 || list[2].Version != 2 {
		t.Fatalf("list: %+v, %v", list, err)
	}
	v4, err := reg.Rotate(ctx, v1.ID)
	if err != nil {
		t.Fatal(err)
	}
	waitSecrets(t, s, v1.ID, v4.SigningSecret)
	// The old tokens' deletes come as events of their own, after the
	// record's update that waitSecrets saw.
	for _, old := range []auth.Issued{v1, v2, v3} {
		hgtest.WaitFor(t, 5*time.Second, func() error {
			if _, err := s.Lookup(ctx, tokenHash(old)); !errors.Is(err, auth.ErrInvalidToken) {
				return fmt.Errorf("version %d after a rotation without grace: %v", old.Version, err)
			}
			return nil
		})
	}
	if rec := b.record(t, v1.ID); len(rec.Previous) != 0 {
		t.Fatalf("record keeps %+v", rec.Previous)
	}

	v5, err := reg.Reissue(ctx, v1.ID, auth.ReissueRequest{Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	waitSecrets(t, s, v1.ID, v5.SigningSecret, v4.SigningSecret)
	if err := reg.Revoke(ctx, v1.ID); err != nil {
		t.Fatal(err)
	}
	waitSecrets(t, s, v1.ID)
	for _, old := range []auth.Issued{v4, v5} {
		hgtest.WaitFor(t, 5*time.Second, func() error {
			if _, err := s.Lookup(ctx, tokenHash(old)); !errors.Is(err, auth.ErrInvalidToken) {
				return fmt.Errorf("version %d after revoke: %v", old.Version, err)
			}
			return nil
		})
	}
	if n := len(b.raw(t)); n != 0 {
		t.Fatalf("revoke left %d keys", n)
	}

	// At most MaxPrevious grace periods: the first to end goes.
	c, err := reg.Issue(ctx, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "many", Signing: true})
	if err != nil {
		t.Fatal(err)
	}
	for range auth.MaxPrevious + 1 {
		if _, err := reg.Reissue(ctx, c.ID, auth.ReissueRequest{Grace: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	if rec := b.record(t, c.ID); len(rec.Previous) != auth.MaxPrevious || rec.Previous[len(rec.Previous)-1].Version != 2 {
		t.Fatalf("previous %+v", rec.Previous)
	}
	if _, ok := b.raw(t)[auth.TokenKey(tokenHash(c))]; ok {
		t.Fatal("the grace period beyond MaxPrevious kept its token key")
	}

	// An expired credential: not rotated, and its grace can not outlive it.
	clock := newClock(time.Now())
	reg.Now = clock.now
	e, err := reg.Issue(ctx, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "short", Expires: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ge, err := reg.Reissue(ctx, e.ID, auth.ReissueRequest{Grace: 2 * time.Hour})
	if err != nil || !ge.GraceEnds.Equal(*e.ExpiresAt) {
		t.Fatalf("grace past the expiry: %+v, %v", ge.GraceEnds, err)
	}
	clock.set(*e.ExpiresAt)
	if _, err := reg.Rotate(ctx, e.ID); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("rotate of an expired credential: %v", err)
	}
}

// On a bucket that takes per-key TTLs, NATS removes the old token's record at
// the end of the grace, and every gateway's watch sees it go.
func TestGraceRecordRemovedByNATS(t *testing.T) {
	b := newTestBucket(t, true)
	ring := testRing(t, "k1")
	reg := &auth.Registry{KV: b.kv, JS: b.js, Sealer: ring}
	obs := &countingObserver{}
	s := b.store(t, obs, auth.StoreConfig{Unsealer: ring})
	ctx := context.Background()
	is, err := reg.Issue(ctx, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "ttl", Signing: true})
	if err != nil {
		t.Fatal(err)
	}
	rot, err := reg.Reissue(ctx, is.ID, auth.ReissueRequest{Grace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e, err := b.kv.Get(ctx, auth.TokenKey(tokenHash(is)))
	if err != nil {
		t.Fatalf("old token key in the grace period: %v", err)
	}
	var old auth.Credential
	if err := json.Unmarshal(e.Value(), &old); err != nil || old.ExpiresAt == nil || !old.ExpiresAt.Equal(*rot.GraceEnds) {
		t.Fatalf("old token record %s: want expires_at %s", e.Value(), rot.GraceEnds)
	}
	deletes := obs.del.Load()
	hgtest.WaitFor(t, 10*time.Second, func() error {
		if _, err := b.kv.Get(ctx, auth.TokenKey(tokenHash(is))); !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("old token key still there: %v", err)
		}
		if obs.del.Load() == deletes {
			return errors.New("the watch has not seen it go")
		}
		return nil
	})
	if late := time.Since(*rot.GraceEnds); late < -time.Second {
		t.Fatalf("NATS removed the record %s before the grace ended", -late)
	}
	if _, err := s.Lookup(ctx, tokenHash(is)); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("old token: %v", err)
	}
	waitSecrets(t, s, is.ID, rot.SigningSecret)
	// The sweep then only tidies the record: no delete marker for a key
	// that is gone.
	if n, err := reg.Sweep(ctx); n != 1 || err != nil {
		t.Fatalf("Sweep = %d, %v", n, err)
	}
	if _, err := b.kv.Get(ctx, auth.TokenKey(tokenHash(is))); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("old token key after the sweep: %v", err)
	}
}

// Reseal moves every record to the ring's first key; then the old key can
// leave the ring and every secret still unseals.
func TestResealThenDropTheOldKey(t *testing.T) {
	b := newTestBucket(t, true)
	ctx := context.Background()
	old := &auth.Registry{KV: b.kv, JS: b.js, Sealer: testRing(t, "k1")}
	v1, err := old.Issue(ctx, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "github", Signing: true})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := old.Reissue(ctx, v1.ID, auth.ReissueRequest{Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Issue(ctx, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "plain"}); err != nil {
		t.Fatal(err)
	}

	reg := &auth.Registry{KV: b.kv, JS: b.js, Sealer: testRing(t, "k2", "k1")}
	res, err := reg.Reseal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// cred.<id> (2 secrets), the new token's record and the old one's.
	if res.Key != "k2" || res.Credentials != 1 || res.Records != 3 || res.Secrets != 4 {
		t.Fatalf("Reseal = %+v", res)
	}
	for k, v := range b.raw(t) {
		if strings.Contains(v, `"key":"k1"`) {
			t.Fatalf("%s still sealed under k1: %s", k, v)
		}
	}
	// The old token's record kept its grace end (and its TTL: it is gone
	// only once the grace ends, not at once).
	e, err := b.kv.Get(ctx, auth.TokenKey(tokenHash(v1)))
	if err != nil || !strings.Contains(string(e.Value()), v2.GraceEnds.Format(time.RFC3339)) {
		t.Fatalf("old token record after reseal: %v", err)
	}
	if again, err := reg.Reseal(ctx); err != nil || again.Records != 0 || again.Credentials != 1 {
		t.Fatalf("second Reseal = %+v, %v; want nothing written", again, err)
	}

	newOnly := testRing(t, "k2")
	s := b.store(t, nil, auth.StoreConfig{Unsealer: newOnly})
	waitSecrets(t, s, v1.ID, v2.SigningSecret, v1.SigningSecret)
	// Without the new key a reseal says which credential it could not do.
	if _, err := (&auth.Registry{KV: b.kv, Sealer: testRing(t, "k3")}).Reseal(ctx); err == nil || !strings.Contains(err.Error(), v1.ID) || !strings.Contains(err.Error(), `"k2"`) {
		t.Fatalf("reseal without the key: %v", err)
	}
}
