package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"strconv"
	"strings"
	"testing"
	"time"
)

// timeZero is a clock for rows that do not read it.
var timeZero time.Time

func itoa(n int) string { return strconv.Itoa(n) }

// signedRequest is a request signed for one row, with the headers of a
// sender.
type signedRequest struct {
	name string
	row  *Scheme
	kv   []string
}

const benchSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

var benchNow = time.Unix(1_750_000_000, 0)

// signedRequests signs body for every row, as each sender does.
func signedRequests(body string) []signedRequest {
	rows := Schemes()
	ts := strconv.FormatInt(benchNow.Unix(), 10)
	const id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	return []signedRequest{
		{"GitHub", rows[0], []string{"X-GitHub-Event", "push", "X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958",
			"X-Hub-Signature", "sha1=0000000000000000000000000000000000000000", "X-Hub-Signature-256", sign(rows[0], benchSecret, "", "", body)}},
		{"Bitbucket", rows[1], []string{"X-Event-Key", "repo:push", "X-Hub-Signature", sign(rows[1], benchSecret, "", "", body)}},
		{"StandardWebhooks", rows[2], []string{"webhook-id", id, "webhook-timestamp", ts, "webhook-signature", sign(rows[2], benchSecret, id, ts, body)}},
		{"Svix", rows[2], []string{"svix-id", id, "svix-timestamp", ts,
			"svix-signature", sign(rows[2], "old", id, ts, body) + " " + sign(rows[2], benchSecret, id, ts, body)}},
		{"Flux", rows[3], []string{"X-Signature", sign(rows[3], benchSecret, "", "", body)}},
		{"CircleCI", rows[4], []string{"Circleci-Event-Type", "workflow-completed", "circleci-signature", "v0=00," + sign(rows[4], benchSecret, "", "", body)}},
		{"PagerDuty", rows[5], []string{"X-PagerDuty-Signature", sign(rows[5], "old", "", "", body) + "," + sign(rows[5], benchSecret, "", "", body)}},
		{"Sentry", rows[6], []string{"Sentry-Hook-Resource", "issue", "Sentry-Hook-Signature", sign(rows[6], benchSecret, "", "", body)}},
	}
}

func body300() string {
	head := `{"ref":"refs/heads/main","repository":{"full_name":"hookgate/hookgate"},"message":"`
	return head + strings.Repeat("x", 300-len(head)-2) + `"}`
}

// Verifying on a prepared Key allocates nothing, whatever the row.
func TestVerifyAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector drops pooled digests at random")
	}
	body := []byte(body300())
	k := mustKey(t, benchSecret)
	for _, r := range signedRequests(string(body)) {
		t.Run(r.name, func(t *testing.T) {
			h := headers(r.kv...)
			if err := k.Verify(r.row, h, body, benchNow); err != nil {
				t.Fatal(err)
			}
			if n := testing.AllocsPerRun(1000, func() { _ = k.Verify(Detect(h), h, body, benchNow) }); n != 0 {
				t.Fatalf("Verify: %v allocations", n)
			}
			bad := *h
			bad.val[r.row.sets[0].sig] = []byte("v1=zz")
			if n := testing.AllocsPerRun(1000, func() { _ = k.Verify(r.row, &bad, body, benchNow) }); n != 0 {
				t.Fatalf("a failing Verify: %v allocations", n)
			}
		})
	}
}

// So do gathering the headers, reading the sender id and event, and
// decoding a form body into a buffer that holds it.
func TestHotPathAllocatesNothing(t *testing.T) {
	kv := signedRequests(body300())[0].kv
	names, values := make([][]byte, len(kv)/2), make([][]byte, len(kv)/2)
	for i := range names {
		names[i], values[i] = []byte(kv[2*i]), []byte(kv[2*i+1])
	}
	var sink []byte
	if n := testing.AllocsPerRun(1000, func() {
		var h Headers
		for i := range names {
			h.Add(names[i], values[i])
		}
		sink = h.SenderID()
		sink = h.Event()
		_ = Detect(&h)
	}); n != 0 {
		t.Fatalf("Add, SenderID, Event, Detect: %v allocations", n)
	}
	ct, body := []byte("application/x-www-form-urlencoded"), []byte("payload=%7B%22zen%22%3A%22Keep+it+logically+awesome.%22%7D")
	buf := make([]byte, 0, len(body))
	if n := testing.AllocsPerRun(1000, func() { sink, _ = FormPayload(buf[:0], ct, body) }); n != 0 {
		t.Fatalf("FormPayload: %v allocations", n)
	}
	_ = sink
}

func BenchmarkVerifyGitHub300B(b *testing.B) {
	body := []byte(body300())
	k := mustKey(b, benchSecret)
	r := signedRequests(string(body))[0]
	h := headers(r.kv...)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := k.Verify(Detect(h), h, body, benchNow); err != nil {
			b.Fatal(err)
		}
	}
}

// One per row of the table (Standard Webhooks under both prefixes), 300-byte
// bodies.
func BenchmarkVerify(b *testing.B) {
	body := []byte(body300())
	k := mustKey(b, benchSecret)
	for _, r := range signedRequests(string(body)) {
		b.Run(r.name, func(b *testing.B) {
			h := headers(r.kv...)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := k.Verify(r.row, h, body, benchNow); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Gathering a GitHub request's signing headers among the usual others.
func BenchmarkHeadersAdd(b *testing.B) {
	kv := append([]string{"Host", "hooks.example.com", "User-Agent", "GitHub-Hookshot/044aadd", "Content-Type", "application/json",
		"Content-Length", "300", "Accept", "*/*", "X-GitHub-Hook-ID", "292430182", "X-GitHub-Hook-Installation-Target-Type", "repository"},
		signedRequests(body300())[0].kv...)
	names, values := make([][]byte, len(kv)/2), make([][]byte, len(kv)/2)
	for i := range names {
		names[i], values[i] = []byte(kv[2*i]), []byte(kv[2*i+1])
	}
	b.ReportAllocs()
	for b.Loop() {
		var h Headers
		for i := range names {
			h.Add(names[i], values[i])
		}
		if Detect(&h) == nil || h.SenderID() == nil || h.Event() == nil {
			b.Fatal("not found")
		}
	}
}

func BenchmarkNewKey(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewKey([]byte(benchSecret)); err != nil {
			b.Fatal(err)
		}
	}
}

// The baseline that Key replaces: crypto/hmac keyed anew for each request.
func BenchmarkCryptoHMACNewGitHub300B(b *testing.B) {
	body := []byte(body300())
	want := macOf(Schemes()[0], benchSecret, "", "", string(body))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		m := hmac.New(sha256.New, []byte(benchSecret))
		m.Write(body)
		if !hmac.Equal(m.Sum(nil), want) {
			b.Fatal("mismatch")
		}
	}
}
