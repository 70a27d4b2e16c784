package auth

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestNewSigningSecret(t *testing.T) {
	a, err := NewSigningSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSigningSecret()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(a, SigningSecretPrefix))
	if !strings.HasPrefix(a, SigningSecretPrefix) || err != nil || len(key) != 32 || a == b {
		t.Fatalf("NewSigningSecret = %q, %q", a, b)
	}
	if got, err := ParseSigningSecret([]byte(a)); err != nil || string(got) != a {
		t.Fatalf("a generated secret does not import: %v", err)
	}
}

func TestParseSigningSecret(t *testing.T) {
	tests := []struct {
		name, in, want string // want "": refused
	}{
		{"plain", "s3cret", "s3cret"},
		{"trimmed", " \t s3cret value\r\n\n", "s3cret value"},
		{"whsec", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
		{"whsec padded", "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},
		{"whsec not base64", "whsec_not-base64!", ""},
		{"whsec unpadded", "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ""},
		{"whsec url base64", "whsec_-_-_", ""},
		{"whsec empty", "whsec_", ""},
		{"empty", "", ""},
		{"blank", " \n\t ", ""},
		{"too long", strings.Repeat("a", MaxSigningSecretLen+1), ""},
		{"longest", strings.Repeat("a", MaxSigningSecretLen), strings.Repeat("a", MaxSigningSecretLen)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSigningSecret([]byte(tt.in))
			if tt.want == "" {
				if err == nil {
					t.Fatalf("accepted %q", got)
				}
				if len(tt.in) > 8 && strings.Contains(err.Error(), strings.TrimSpace(tt.in)) {
					t.Fatalf("error quotes the secret: %v", err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("ParseSigningSecret = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
