package ascii

import "testing"

func TestEqualFold(t *testing.T) {
	for _, tt := range []struct {
		s, lower string
		want     bool
	}{
		{"Authorization", "authorization", true},
		{"AUTHORIZATION", "authorization", true},
		{"authorizatio", "authorization", false},
		{"Idempotency-\u212Aey", "idempotency-key", false}, // the Kelvin sign is not a k
		{"", "", true},
	} {
		if got := EqualFold([]byte(tt.s), tt.lower); got != tt.want {
			t.Errorf("EqualFold(%q, %q) = %v", tt.s, tt.lower, got)
		}
	}
}

func TestTrimBlank(t *testing.T) {
	for in, want := range map[string]string{" \ta b\t ": "a b", "x\u00a0": "x\u00a0", "": "", " \t": ""} {
		if got := string(TrimBlank([]byte(in))); got != want {
			t.Errorf("TrimBlank(%q) = %q, want %q", in, got, want)
		}
	}
}
