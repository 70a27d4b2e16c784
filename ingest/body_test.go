package ingest

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hookgate/hookgate/auth"
)

func TestValidateBody(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		hits, depl bool
	}{
		{"object", `{"a":1}`, true, true},
		{"object with space", " \n{\"a\":[1,{\"b\":\"]\"}]}\t", true, true},
		{"batch", `[{"a":1},{"b":"},{"}]`, true, false},
		{"batch with space", ` [ {} , { "x" : [ {} ] } ] `, true, false},
		{"empty batch", `[]`, false, false},
		{"empty batch spaced", ` [ ] `, false, false},
		{"batch of numbers", `[1,2]`, false, false},
		{"batch mixed", `[{},1]`, false, false},
		{"batch with nested arrays", `[{}, [{}]]`, false, false},
		{"string", `"x"`, false, false},
		{"null", `null`, false, false},
		{"empty", ``, false, false},
		{"spaces", `   `, false, false},
		{"broken", `{"a":`, false, false},
		{"trailing garbage", `{} {}`, false, false},
		{"escaped quote", `[{"a":"\"}"},{}]`, true, false},
		{"deep but allowed", strings.Repeat(`{"a":`, 255) + "1" + strings.Repeat("}", 255), true, true},
		{"too deep", strings.Repeat(`{"a":`, 257) + "1" + strings.Repeat("}", 257), false, false},
		{"raw control char before an escape", "[{\"\":\"\x04\\b\"}]", false, false},
		{"raw newline in a string", "{\"a\":\"x\ny\\n\"}", false, false},
		{"brackets in strings do not count", `{"a":"` + strings.Repeat("[", 1000) + `"}`, true, true},
		{"UTF-8 in a string", `{"a":"h\u00e9 hé 日本 🚀"}`, true, true},
		{"invalid UTF-8 in a string", "{\"a\":\"\xff\xfe\"}", false, false},
		{"unpaired surrogate in a string", "{\"a\":\"\xed\xa0\x80\"}", false, false},
		{"truncated UTF-8 in a string", "[{\"a\":\"\xe6\x97\"}]", false, false},
		{"overlong encoding in a key", "{\"\xc0\xaf\":1}", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ValidateBody(auth.KindHits, []byte(tt.body)); (err == nil) != tt.hits {
				t.Errorf("hits: ValidateBody(%q) = %v, want ok=%v", tt.body, err, tt.hits)
			}
			if err := ValidateBody(auth.KindDeploy, []byte(tt.body)); (err == nil) != tt.depl {
				t.Errorf("deploy: ValidateBody(%q) = %v, want ok=%v", tt.body, err, tt.depl)
			}
		})
	}
}

func TestValidateBodyDoesNotAllocate(t *testing.T) {
	body := []byte(`{"receiver":"hookgate","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"HighLatency","severity":"page"},"annotations":{"summary":"p99 latency above 1s"},"startsAt":"2026-11-28T03:00:00Z"}],"groupKey":"{}:{alertname=\"HighLatency\"}","version":"4"}`)
	batch := append(append([]byte("["), body...), ']')
	if n := testing.AllocsPerRun(100, func() {
		_ = ValidateBody(auth.KindHits, body)
		_ = ValidateBody(auth.KindHits, batch)
	}); n != 0 {
		t.Fatalf("ValidateBody allocates %v times", n)
	}
}

// wantShape is the oracle: encoding/json builds the values and looks.
func wantShape(kind auth.Kind, b []byte) bool {
	if !json.Valid(b) {
		return false
	}
	var v any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if d.Decode(&v) != nil {
		return false
	}
	switch x := v.(type) {
	case map[string]any:
		return true
	case []any:
		if kind != auth.KindHits || len(x) == 0 {
			return false
		}
		for _, e := range x {
			if _, ok := e.(map[string]any); !ok {
				return false
			}
		}
		return true
	}
	return false
}

func FuzzValidateBody(f *testing.F) {
	for _, s := range []string{`{}`, `[{}]`, `[]`, `[{},1]`, `{"a":"\u00e9"}`, `[{"a":"\"]"}]`, `"x"`, ` `, `{"a":1e400}`, "{\"a\":\"\xff\"}", "{\"a\":\"\xed\xa0\x80\"}", strings.Repeat("[", 400) + strings.Repeat("]", 400)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, kind := range []auth.Kind{auth.KindHits, auth.KindDeploy} {
			got := ValidateBody(kind, b) == nil
			want := wantShape(kind, b)
			if got && !want {
				t.Fatalf("%s: accepted %q which encoding/json refuses or is of the wrong shape", kind, b)
			}
			// encoding/json takes invalid UTF-8 (it substitutes U+FFFD);
			// the contract does not.
			if got && !utf8.Valid(b) {
				t.Fatalf("%s: accepted %q, which is not UTF-8", kind, b)
			}
			// Refusing more than encoding/json (nesting deeper than 256) is
			// safe, accepting more is not.
		}
	})
}

// scopedMsgID builds its hash input on the stack; only the id string it
// returns may be allocated.
func TestScopedMsgIDAllocatesOnlyItsResult(t *testing.T) {
	key := []byte("retry-key-0123456789")
	if n := testing.AllocsPerRun(100, func() { _ = scopedMsgID("acme", "web", auth.KindHits, key) }); n > 1 {
		t.Fatalf("scopedMsgID allocates %v times", n)
	}
}
