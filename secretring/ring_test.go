package secretring_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hookgate/hookgate/secretring"
)

func keyB64(b byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)) }

func mustParse(t *testing.T, text string) *secretring.Ring {
	t.Helper()
	r, err := secretring.Parse([]byte(text), "test")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSealUnsealRoundTrip(t *testing.T) {
	r := mustParse(t, "# ring\n\nk2 "+keyB64(2)+"  # the new one seals\nk1 "+keyB64(1)+"\n")
	secret := []byte("whsec_c2VjcmV0LXNpZ25pbmcta2V5LTEyMzQ1Njc4OTA=")
	s, err := r.Seal("cred-1", secret)
	if err != nil {
		t.Fatal(err)
	}
	if s.Key != "k2" {
		t.Fatalf("sealed under %q, want the first key k2", s.Key)
	}
	if strings.ContainsAny(s.Sealed, "+/=") {
		t.Fatalf("sealed %q is not base64url without padding", s.Sealed)
	}
	raw, err := base64.RawURLEncoding.DecodeString(s.Sealed)
	if err != nil || len(raw) != 12+len(secret)+16 {
		t.Fatalf("sealed is %d bytes (%v), want nonce 12 + ciphertext %d + tag 16", len(raw), err, len(secret))
	}
	if bytes.Contains(raw, secret) || strings.Contains(s.Sealed, "whsec_") {
		t.Fatal("the secret shows through its seal")
	}
	got, err := r.Unseal("cred-1", s)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unseal = %q, %v", got, err)
	}
	// Two seals of one secret differ: a fresh nonce each time.
	s2, _ := r.Seal("cred-1", secret)
	if s2.Sealed == s.Sealed {
		t.Fatal("two seals are equal: nonce reused")
	}

	// A key later in the ring still unseals what it sealed.
	old := mustParse(t, "k1 "+keyB64(1)+"\n")
	s1, _ := old.Seal("cred-1", secret)
	if got, err := r.Unseal("cred-1", s1); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("second key: %q, %v", got, err)
	}
}

func TestUnsealRefuses(t *testing.T) {
	r := mustParse(t, "k1 "+keyB64(1)+"\n")
	s, err := r.Seal("cred-1", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(s.Sealed)
	flip := func(i int) secretring.Sealed {
		b := bytes.Clone(raw)
		b[i] ^= 1
		return secretring.Sealed{Key: s.Key, Sealed: base64.RawURLEncoding.EncodeToString(b)}
	}
	other := mustParse(t, "k1 "+keyB64(9)+"\n")
	tests := []struct {
		name string
		ring *secretring.Ring
		aad  string
		s    secretring.Sealed
		want error
	}{
		{"another credential's id", r, "cred-2", s, secretring.ErrUnseal},
		{"unknown key id", r, "cred-1", secretring.Sealed{Key: "k9", Sealed: s.Sealed}, secretring.ErrUnknownKey},
		{"same id, other key", other, "cred-1", s, secretring.ErrUnseal},
		{"tampered nonce", r, "cred-1", flip(0), secretring.ErrUnseal},
		{"tampered ciphertext", r, "cred-1", flip(13), secretring.ErrUnseal},
		{"tampered tag", r, "cred-1", flip(len(raw) - 1), secretring.ErrUnseal},
		{"truncated", r, "cred-1", secretring.Sealed{Key: "k1", Sealed: s.Sealed[:10]}, secretring.ErrUnseal},
		{"padded base64", r, "cred-1", secretring.Sealed{Key: "k1", Sealed: base64.URLEncoding.EncodeToString(raw[:len(raw)-1])}, secretring.ErrUnseal},
		{"standard base64", r, "cred-1", secretring.Sealed{Key: "k1", Sealed: strings.Repeat("+/", 20)}, secretring.ErrUnseal},
		{"empty", r, "cred-1", secretring.Sealed{}, secretring.ErrUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.ring.Unseal(tt.aad, tt.s)
			if !errors.Is(err, tt.want) || got != nil {
				t.Fatalf("Unseal = %q, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	secretKey := keyB64(7)
	tests := []struct {
		name, text, want string
	}{
		{"empty", "", "holds no key"},
		{"only comments", "# nothing\n\n   \n", "holds no key"},
		{"one field", "k1\n", "line 1: want"},
		{"three fields", "# c\nk1 " + secretKey + " extra\n", "line 2: want"},
		{"bad id", "k/1 " + secretKey + "\n", `line 1: key id "k/1"`},
		{"long id", strings.Repeat("k", 65) + " " + secretKey + "\n", "line 1: key id"},
		{"not base64", "k1 !!!!\n", `line 1: key "k1": want the standard base64 of 32 bytes`},
		{"short key", "k1 " + base64.StdEncoding.EncodeToString(make([]byte, 16)) + "\n", `line 1: key "k1"`},
		{"long key", "k1 " + base64.StdEncoding.EncodeToString(make([]byte, 33)) + "\n", `line 1: key "k1"`},
		{"url base64", "k1 " + base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)) + "\n", `line 1: key "k1"`},
		{"duplicate id", "k1 " + secretKey + "\n\nk1 " + keyB64(8) + "\n", `line 3: key id "k1" appears twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := secretring.Parse([]byte(tt.text), "/etc/hookgate/secret-keys")
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "/etc/hookgate/secret-keys") {
				t.Fatalf("Parse = %v, want an error naming the file and %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secretKey) || strings.Contains(err.Error(), "!!!!") {
				t.Fatalf("error shows key material: %v", err)
			}
		})
	}
	// Comments after a key, CRLF line ends and tabs are fine.
	r := mustParse(t, "k1\t"+keyB64(1)+" # first\r\nk2 "+keyB64(2)+"\r\n")
	if got := r.KeyIDs(); len(got) != 2 || got[0] != "k1" || r.SealingKey() != "k1" {
		t.Fatalf("keys %v", got)
	}
}

func TestCreateAndLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, secretring.FileName)
	r, created, err := secretring.LoadOrCreate(path)
	if err != nil || !created {
		t.Fatalf("LoadOrCreate = %v, created %v", err, created)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("ring file mode %v, want 0600", st.Mode().Perm())
	}
	if ids := r.KeyIDs(); len(ids) != 1 || !secretring.ValidKeyID(ids[0]) || !strings.HasPrefix(ids[0], "k") {
		t.Fatalf("created ring keys %v", ids)
	}
	s, _ := r.Seal("c", []byte("x"))

	// Loaded again, it is the same key; Create refuses to overwrite it.
	again, created, err := secretring.LoadOrCreate(path)
	if err != nil || created {
		t.Fatalf("second LoadOrCreate = %v, created %v", err, created)
	}
	if got, err := again.Unseal("c", s); err != nil || string(got) != "x" {
		t.Fatalf("reloaded ring: %q, %v", got, err)
	}
	if _, err := secretring.Create(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Create over an existing ring: %v", err)
	}
	if _, err := secretring.Load(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing file: %v", err)
	}
}

// Two processes starting at once make one ring between them.
func TestLoadOrCreateRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), secretring.FileName)
	var wg sync.WaitGroup
	rings := make([]*secretring.Ring, 8)
	for i := range rings {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _, err := secretring.LoadOrCreate(path)
			if err != nil {
				t.Error(err)
			}
			rings[i] = r
		}()
	}
	wg.Wait()
	for _, r := range rings {
		if r != nil && r.SealingKey() != rings[0].SealingKey() {
			t.Fatalf("rings differ: %s and %s", r.SealingKey(), rings[0].SealingKey())
		}
	}
}

// A File re-read after its first key changed seals under the new key and
// keeps its old ring when the file turns bad.
func TestFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), secretring.FileName)
	if err := os.WriteFile(path, []byte("k1 "+keyB64(1)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := secretring.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s1, _ := f.Seal("c", []byte("x"))
	if err := os.WriteFile(path, []byte("k2 "+keyB64(2)+"\nk1 "+keyB64(1)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Reload(); err != nil {
		t.Fatal(err)
	}
	if f.SealingKey() != "k2" {
		t.Fatalf("sealing key %s after reload", f.SealingKey())
	}
	if got, err := f.Unseal("c", s1); err != nil || string(got) != "x" {
		t.Fatalf("old key after reload: %q, %v", got, err)
	}
	if err := os.WriteFile(path, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Reload(); err == nil {
		t.Fatal("reload of a bad file succeeded")
	}
	if f.SealingKey() != "k2" {
		t.Fatal("a failed reload replaced the ring")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("k1 " + keyB64(1) + "\n# c\n"))
	f.Add([]byte("k1 " + keyB64(1) + " x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := secretring.Parse(data, "fuzz")
		if err != nil {
			return
		}
		s, err := r.Seal("id", []byte("secret"))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := r.Unseal("id", s); err != nil || string(got) != "secret" {
			t.Fatalf("round trip: %q, %v", got, err)
		}
	})
}
