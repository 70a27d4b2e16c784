package auth

import (
	"crypto/sha256"
	"hash/crc32"
	"strings"
	"testing"
)

func TestNewTokenRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	for _, kind := range []Kind{KindHits, KindDeploy} {
		for range 200 {
			tok, err := NewToken(kind)
			if err != nil {
				t.Fatal(err)
			}
			if len(tok) != TokenLen {
				t.Fatalf("len(%q) = %d, want %d", tok, len(tok), TokenLen)
			}
			wantPrefix := map[Kind]string{KindHits: PrefixHits, KindDeploy: PrefixDeploy}[kind]
			if !strings.HasPrefix(tok, wantPrefix) {
				t.Fatalf("%q lacks prefix %q", tok, wantPrefix)
			}
			if err := CheckToken([]byte(tok)); err != nil {
				t.Fatalf("CheckToken(%q) = %v", tok, err)
			}
			if seen[tok] {
				t.Fatalf("token repeated: %q", tok)
			}
			seen[tok] = true
		}
	}
	if _, err := NewToken("other"); err == nil {
		t.Fatal("NewToken of an unknown kind succeeded")
	}
}

func TestCheckTokenRefusesEveryOneCharacterTypo(t *testing.T) {
	tok, err := NewToken(KindHits)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(PrefixHits); i < len(tok); i++ {
		for _, c := range []byte("0aZ9") {
			if tok[i] == c {
				continue
			}
			typo := []byte(tok)
			typo[i] = c
			if CheckToken(typo) == nil {
				t.Fatalf("typo at %d (%q) passed the checksum", i, c)
			}
		}
	}
	// Dropped and doubled characters change the length.
	if CheckToken([]byte(tok[:len(tok)-1])) == nil || CheckToken([]byte(tok+"A")) == nil {
		t.Fatal("a token of the wrong length passed")
	}
}

func TestCheckTokenOtherFormats(t *testing.T) {
	tests := []struct {
		name string
		tok  string
		ok   bool
	}{
		{"platform token of 16", strings.Repeat("a", 16), true},
		{"platform token of 256", strings.Repeat("Z", 256), true},
		{"platform punctuation", "abc!#$%&'()*+,-./:;<=>?@[]^_`{|}~", true},
		{"too short", strings.Repeat("a", 15), false},
		{"too long", strings.Repeat("a", 257), false},
		{"space", "abcdefgh ijklmnopq", false},
		{"control", "abcdefgh\x01ijklmnopq", false},
		{"non-ascii", "abcdefghé" + "ijklmnopq", false},
		{"hg prefix, no checksum", "hgh_" + strings.Repeat("a", 50), false},
		{"deploy prefix, wrong length", "hgd_abcdefghijklmnop", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := CheckToken([]byte(tt.tok)); (err == nil) != tt.ok {
				t.Fatalf("CheckToken(%q) = %v, want ok=%v", tt.tok, err, tt.ok)
			}
		})
	}
}

func TestChecksumIsCRC32IEEE(t *testing.T) {
	for _, s := range []string{"", "a", "hgh_0123456789", strings.Repeat("xyz", 40)} {
		if got, want := checksum([]byte(s)), crc32.ChecksumIEEE([]byte(s)); got != want {
			t.Fatalf("checksum(%q) = %08x, want %08x", s, got, want)
		}
	}
}

func TestHashRoundTrip(t *testing.T) {
	h := HashToken([]byte("some-platform-token"))
	back, err := ParseHash(h.String())
	if err != nil || back != h {
		t.Fatalf("ParseHash(String()) = %v, %v", back, err)
	}
	for _, bad := range []string{"", "abc", strings.ToUpper(h.String()), h.String()[:63] + "g"} {
		if _, err := ParseHash(bad); err == nil {
			t.Errorf("ParseHash(%q) succeeded", bad)
		}
	}
}

func TestCheckTokenDoesNotAllocate(t *testing.T) {
	tok, _ := NewToken(KindDeploy)
	b := []byte(tok)
	if n := testing.AllocsPerRun(100, func() { _ = CheckToken(b); _ = HashToken(b) }); n != 0 {
		t.Fatalf("CheckToken+HashToken allocate %v times", n)
	}
}

func FuzzCheckToken(f *testing.F) {
	tok, _ := NewToken(KindHits)
	for _, s := range []string{tok, "hgd_" + tok[4:], strings.Repeat("x", 16), "hgh_", "", "\x00\xff", strings.Repeat("~", 257)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := CheckToken(b)
		if err != nil {
			return
		}
		if len(b) < MinTokenLen || len(b) > MaxTokenLen {
			t.Fatalf("accepted a token of length %d", len(b))
		}
		for _, c := range b {
			if c < 0x21 || c > 0x7e {
				t.Fatalf("accepted byte %#x", c)
			}
		}
		if hasOwnPrefix(b) && len(b) != TokenLen {
			t.Fatalf("accepted an hg token of length %d", len(b))
		}
	})
}

//go:noinline
func hashFromStack(tok []byte) Hash {
	var buf [512]byte
	n := copy(buf[:], tok)
	return HashToken(buf[:n])
}

// The handler hashes a token that sits in a stack buffer: hashing must not
// move that buffer to the heap.
func TestHashTokenFromTheStackDoesNotAllocate(t *testing.T) {
	tok, _ := NewToken(KindHits)
	b := []byte(tok)
	if n := testing.AllocsPerRun(100, func() { _ = hashFromStack(b) }); n != 0 {
		t.Fatalf("hashing from a stack buffer allocates %v times", n)
	}
	if hashFromStack(b) != HashToken(b) {
		t.Fatal("hash differs")
	}
	long := []byte(strings.Repeat("x", 1300)) // several chunks of the digest's buffer
	if Sum256(long) != sha256.Sum256(long) {
		t.Fatal("Sum256 of a long input differs from sha256.Sum256")
	}
}
