package signature

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Headers arrive as "name: value" lines. Whatever they hold, Detect picks
// the table's first present row, SenderID and Event keep to their rules, and
// Verify never panics.
func FuzzHeaders(f *testing.F) {
	for _, r := range signedRequests(`{"a":1}`) {
		var b strings.Builder
		for i := 0; i < len(r.kv); i += 2 {
			b.WriteString(r.kv[i] + ": " + r.kv[i+1] + "\n")
		}
		f.Add(b.String(), []byte(`{"a":1}`))
	}
	f.Add("X-Hub-Signature-256: a\nx-hub-signature-256: b\nX-GitHub-Event: push\nsvix-id: \n", []byte{})
	k, _ := NewKey([]byte(benchSecret))
	f.Fuzz(func(t *testing.T, lines string, body []byte) {
		var h Headers
		for line := range strings.SplitSeq(lines, "\n") {
			name, value, _ := strings.Cut(line, ":")
			h.Add([]byte(name), []byte(strings.TrimLeft(value, " ")))
		}
		s := Detect(&h)
		for i, row := range Schemes() {
			if row.presented(&h) != nil {
				if s != row {
					t.Fatalf("Detect = %v; row %d is the first present", s, i)
				}
				break
			}
		}
		if s != nil && s.presented(&h) == nil {
			t.Fatalf("Detect = %v, whose header is absent", s)
		}
		if id := h.SenderID(); id != nil && !visibleASCII(id, 200) {
			t.Fatalf("SenderID = %q", id)
		}
		if ev := h.Event(); ev != nil && !printableASCII(ev, 100) {
			t.Fatalf("Event = %q", ev)
		}
		err := k.Verify(s, &h, body, benchNow)
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("Verify = %v", err)
		}
	})
}

// A signature value that verifies holds the MAC that crypto/hmac computes,
// spelt as the row spells it (hex in any case), as one of its entries.
func FuzzVerify(f *testing.F) {
	rows := Schemes()
	for i, r := range rows {
		f.Add(uint8(i), sign(r, "secret", "msg_1", "1614265330", "{}"), "msg_1", "1614265330", []byte("{}"), []byte("secret"))
	}
	f.Add(uint8(1), "sha1=00", "", "", []byte("{}"), []byte("secret"))
	f.Add(uint8(2), "v1,bad v1,"+base64.StdEncoding.EncodeToString(make([]byte, 32)), "id", "0", []byte("{}"), []byte("whsec_AAAA"))
	f.Add(uint8(4), "v1=a,,v1=b, v1="+strings.Repeat("0", 64), "", "", []byte{}, []byte("s"))
	f.Fuzz(func(t *testing.T, row uint8, value, id, ts string, body, secret []byte) {
		s := rows[int(row)%len(rows)]
		k, err := NewKey(secret)
		if err != nil {
			return
		}
		set := s.sets[0]
		var h Headers
		h.Add([]byte(fieldNames[set.sig]), []byte(value))
		if set.id != fNone {
			h.Add([]byte(fieldNames[set.id]), []byte(id))
			h.Add([]byte(fieldNames[set.timestamp]), []byte(ts))
		}
		now := benchNow
		if n, ok := parseTimestamp([]byte(ts)); ok {
			now = time.Unix(n, 0)
		}
		if err := k.Verify(s, &h, body, now); err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Verify = %v", err)
			}
			return
		}
		want := sign(s, string(secret), id, ts, string(body))
		if s.enc == hexEncoded {
			value, want = strings.ToLower(value), strings.ToLower(want)
		}
		sep := " "
		if s.sep != 0 {
			sep = string(s.sep)
		}
		for sig := range strings.SplitSeq(value, sep) {
			if strings.Trim(sig, " \t") == want {
				return
			}
		}
		t.Fatalf("%q verified without %q in it", value, want)
	})
}

// Verify and the Standard Webhooks reference library agree on every
// signature header, and what the library signs always verifies.
func FuzzStandardWebhooks(f *testing.F) {
	f.Add("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", "msg_p5jXN8AQM9LWM0D4loKWxJek", int64(1614265330), []byte(`{"test": 2432232314}`))
	f.Add("v1,a v1,b  v2,c", "m", int64(0), []byte{})
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		f.Fatal(err)
	}
	k, _ := NewKey([]byte(secret))
	f.Fuzz(func(t *testing.T, value, id string, sec int64, body []byte) {
		if sec < 0 || !visibleASCII([]byte(id), 200) || strings.ContainsAny(value, "\r\n") || strings.Trim(value, " \t") != strings.Trim(value, " ") {
			return // refused by Verify alone, not a header value, or blanks around it that HTTP drops
		}
		ts := strconv.FormatInt(sec, 10)
		now := time.Unix(sec, 0)
		check := func(value string) bool {
			hh := http.Header{}
			hh.Set("webhook-id", id)
			hh.Set("webhook-timestamp", ts)
			hh.Set("webhook-signature", value)
			want := wh.VerifyIgnoringTimestamp(body, hh) == nil
			h := headers("webhook-id", id, "webhook-timestamp", ts, "webhook-signature", value)
			got := k.Verify(Detect(h), h, body, now) == nil
			if got != want {
				t.Fatalf("%q: Verify %v, reference library %v", value, got, want)
			}
			return got
		}
		check(value)
		sig, err := wh.Sign(id, now, body)
		if err != nil {
			t.Fatal(err)
		}
		if !check(value + " " + sig) {
			t.Fatalf("the library's own signature after %q did not verify", value)
		}
	})
}

// A timestamp that parses is written as strconv writes it.
func FuzzParseTimestamp(f *testing.F) {
	for _, s := range []string{"1614265330", "0", "01", "+1", "-1", "999999999999999999", "1e9", " 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := parseTimestamp([]byte(s))
		if ok && strconv.FormatInt(n, 10) != s {
			t.Fatalf("parseTimestamp(%q) = %d", s, n)
		}
		if m, err := strconv.ParseInt(s, 10, 64); err == nil && m >= 0 && m < 1e17 && strconv.FormatInt(m, 10) == s && (!ok || n != m) {
			t.Fatalf("parseTimestamp(%q) = %d, %v; want %d", s, n, ok, m)
		}
	})
}

// A form body that FormPayload reads is one that net/url reads the same; and
// any payload, escaped by net/url, comes back as it was.
func FuzzFormPayload(f *testing.F) {
	f.Add("application/x-www-form-urlencoded", []byte("payload=%7B%22a%22%3A1%7D"))
	f.Add("application/x-www-form-urlencoded; charset=utf-8", []byte("payload=a+b&c"))
	f.Add("application/json", []byte("payload=%zz"))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		got, ok := FormPayload(nil, []byte(contentType), body)
		if ok {
			vals, err := url.ParseQuery(string(body))
			if err == nil && (len(vals) != 1 || len(vals["payload"]) != 1 || vals["payload"][0] != string(got)) {
				t.Fatalf("FormPayload(%q) = %q; net/url reads %q", body, got, vals)
			}
		}
		esc := "payload=" + url.QueryEscape(string(body))
		back, ok := FormPayload([]byte("x"), []byte("application/x-www-form-urlencoded"), []byte(esc))
		if !ok || !bytes.Equal(back, append([]byte("x"), body...)) {
			t.Fatalf("FormPayload(%q) = %q, %v; want %q", esc, back, ok, body)
		}
	})
}

// An imported secret is trimmed content that imports as itself and makes a
// Key; the error never holds the content.
func FuzzImportSecret(f *testing.F) {
	f.Add([]byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"))
	f.Add([]byte(" whsec_!! "))
	f.Add([]byte("It's a Secret to Everybody"))
	f.Fuzz(func(t *testing.T, content []byte) {
		s, err := ImportSecret(content)
		if err != nil {
			if err != ErrSecretEmpty && err != ErrSecretBase64 {
				t.Fatalf("ImportSecret = %v", err)
			}
			return
		}
		if !bytes.Equal(s, bytes.TrimSpace(s)) || len(s) == 0 {
			t.Fatalf("ImportSecret = %q", s)
		}
		if again, err := ImportSecret(s); err != nil || !bytes.Equal(again, s) {
			t.Fatalf("ImportSecret(%q) = %q, %v", s, again, err)
		}
		if _, err := NewKey(s); err != nil {
			t.Fatalf("NewKey(%q): %v", s, err)
		}
	})
}
