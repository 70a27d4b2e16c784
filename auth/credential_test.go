package auth

import (
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	for _, s := range []string{"a", "0", "acme", "my-app_2", strings.Repeat("a", 63)} {
		if !ValidName([]byte(s)) {
			t.Errorf("ValidName(%q) = false", s)
		}
	}
	for _, s := range []string{"", "-a", "_a", "A", "a.b", "a*", "a>", "a b", "é", strings.Repeat("a", 64), "a/b"} {
		if ValidName([]byte(s)) {
			t.Errorf("ValidName(%q) = true", s)
		}
	}
}

func TestParseCredential(t *testing.T) {
	tests := []struct {
		name, json string
		ok         bool
	}{
		{"hits org-wide", `{"id":"c1","org":"acme","app":"","kind":"hits","name":"n","version":1,"created_at":"2026-01-01T00:00:00Z","expires_at":null}`, true},
		{"deploy", `{"id":"c1","org":"acme","app":"web","kind":"deploy","name":"n","version":3,"created_at":"2026-01-01T00:00:00Z","expires_at":"2027-01-01T00:00:00Z"}`, true},
		{"deploy without app", `{"id":"c1","org":"acme","app":"","kind":"deploy","name":"n","version":1,"created_at":"2026-01-01T00:00:00Z"}`, false},
		{"bad org", `{"id":"c1","org":"Acme","kind":"hits","version":1}`, false},
		{"subject injection", `{"id":"c1","org":"a.>","kind":"hits","version":1}`, false},
		{"bad kind", `{"id":"c1","org":"acme","kind":"push","version":1}`, false},
		{"empty id", `{"id":"","org":"acme","kind":"hits","version":1}`, false},
		{"id with a space", `{"id":"c 1","org":"acme","kind":"hits","version":1}`, false},
		{"id with a line break", `{"id":"c1\r\nX: y","org":"acme","kind":"hits","version":1}`, false},
		{"platform's own id", `{"id":"Cred-4F2A_7=","org":"acme","kind":"hits","version":1}`, true},
		{"id that is no key", `{"id":"Cred:7","org":"acme","kind":"hits","version":1}`, false},
		{"id with a key separator", `{"id":"a.b","org":"acme","kind":"hits","version":1}`, false},
		{"version 0", `{"id":"c1","org":"acme","kind":"hits","version":0}`, true},
		{"no version", `{"id":"c1","org":"acme","app":"","kind":"hits","name":"n"}`, true},
		{"not json", `garbage`, false},
		{"wrong types", `{"id":1}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCredential([]byte(tt.json))
			if (err == nil) != tt.ok {
				t.Fatalf("ParseCredential = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func FuzzParseCredential(f *testing.F) {
	f.Add([]byte(`{"id":"c1","org":"acme","app":"web","kind":"deploy","name":"n","version":1,"created_at":"2026-01-01T00:00:00Z","expires_at":null}`))
	f.Add([]byte(`{"id":"c1","org":"acme","kind":"hits","version":1}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCredential(b)
		if err != nil {
			return
		}
		// Whatever was accepted can only reach a subject as valid names.
		if !ValidName([]byte(c.Org)) || (c.App != "" && !ValidName([]byte(c.App))) || !ValidRecordID(c.ID) {
			t.Fatalf("accepted %+v", c)
		}
		if c.Kind != KindHits && c.Kind != KindDeploy {
			t.Fatalf("accepted kind %q", c.Kind)
		}
	})
}

func TestRedactKeys(t *testing.T) {
	h := HashToken([]byte("some-token-value-123"))
	in := "nats: permissions violation for subscription to \"$JS.API.DIRECT.GET.KV_b.$KV.b." + TokenKey(h) + "\""
	out := RedactKeys(in)
	if strings.Contains(out, h.String()) || !strings.Contains(out, "tok.<sha256>") {
		t.Fatalf("RedactKeys(%q) = %q", in, out)
	}
}
