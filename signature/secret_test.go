package signature

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

func TestNewSecret(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		s := NewSecret()
		rest, ok := strings.CutPrefix(s, "whsec_")
		if !ok {
			t.Fatalf("%q has no whsec_ prefix", s)
		}
		b, err := base64.StdEncoding.DecodeString(rest)
		if err != nil || len(b) != 32 || len(rest) != 44 {
			t.Fatalf("%q: %d bytes, %v; want standard base64 of 32 bytes", s, len(b), err)
		}
		if seen[s] {
			t.Fatalf("%q twice", s)
		}
		seen[s] = true
		if got, err := ImportSecret([]byte(s + "\n")); err != nil || string(got) != s {
			t.Fatalf("ImportSecret(NewSecret()) = %q, %v", got, err)
		}
	}
}

func TestImportSecret(t *testing.T) {
	for _, tt := range []struct {
		name, content, want string
		err                 error
	}{
		{"whsec_", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", nil},
		{"whsec_ with a newline", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", nil},
		{"whsec_ with blanks around", " \t\r\nwhsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw \r\n\n", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", nil},
		{"whsec_ padded", "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")), "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")), nil},
		{"any other secret", "  It's a Secret to Everybody\n", "It's a Secret to Everybody", nil},
		{"inner blanks stay", "a  b", "a  b", nil},
		{"empty", "", "", ErrSecretEmpty},
		{"whitespace only", " \n\t\r\n", "", ErrSecretEmpty},
		{"whsec_ only", "whsec_\n", "", ErrSecretBase64},
		{"whsec_ not base64", "whsec_not base64!", "", ErrSecretBase64},
		{"whsec_ without padding", "whsec_" + base64.RawStdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")), "", ErrSecretBase64},
		{"whsec_ url alphabet", "whsec_" + base64.URLEncoding.EncodeToString([]byte{0xfb, 0xff, 0xbf}), "", ErrSecretBase64},
		{"whsec_ broken across lines", "whsec_MfKQ9r8GKYqrTwjU\nPD8ILPZIo2LaLaSw\n", "", ErrSecretBase64},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ImportSecret([]byte(tt.content))
			if err != tt.err || string(got) != tt.want {
				t.Fatalf("ImportSecret = %q, %v; want %q, %v", got, err, tt.want, tt.err)
			}
			if err != nil && strings.Contains(err.Error(), "Mf") {
				t.Fatalf("the error %q holds the secret", err)
			}
			if err == nil {
				if _, err := NewKey(got); err != nil {
					t.Fatalf("NewKey of an imported secret: %v", err)
				}
			}
		})
	}
	// The secret is the file's content, not a copy.
	content := []byte(" abc ")
	got, _ := ImportSecret(content)
	if !bytes.Equal(got, []byte("abc")) {
		t.Fatalf("%q", got)
	}
}
