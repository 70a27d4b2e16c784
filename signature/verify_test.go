package signature

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// The senders' published vectors.
func TestVectors(t *testing.T) {
	for _, tt := range []struct {
		name, secret, body string
		kv                 []string
		now                time.Time
	}{
		{
			name: "GitHub's docs", secret: "It's a Secret to Everybody", body: "Hello, World!",
			kv: []string{"X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"},
		},
		{
			name: "Standard Webhooks' reference tests", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", body: `{"test": 2432232314}`,
			kv: []string{"webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp", "1614265330",
				"webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
			now: time.Unix(1614265330, 0),
		},
		{
			name: "Svix's headers", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", body: `{"test": 2432232314}`,
			kv: []string{"svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek", "svix-timestamp", "1614265330",
				"svix-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
			now: time.Unix(1614265330, 0),
		},
		{
			name: "CircleCI's docs", secret: "secret", body: "hello world",
			kv: []string{"circleci-signature", "v1=734cc62f32841568f45715aeb9f4d7891324e6d948e4c6c60c0621cdac48623a"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k := mustKey(t, tt.secret)
			h := headers(tt.kv...)
			s := Detect(h)
			if err := k.Verify(s, h, []byte(tt.body), tt.now); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if err := k.Verify(s, h, []byte(tt.body+" "), tt.now); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Verify of a tampered body = %v; want ErrInvalid", err)
			}
		})
	}
}

// The vectors computed here, with crypto/hmac, agree with the published ones,
// so that the signer the other tests use is right too.
func TestSignerAgreesWithVectors(t *testing.T) {
	if got := sign(Schemes()[0], "It's a Secret to Everybody", "", "", "Hello, World!"); got != "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17" {
		t.Errorf("GitHub: %s", got)
	}
	if got := sign(Schemes()[2], "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", `{"test": 2432232314}`); got != "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=" {
		t.Errorf("Standard Webhooks: %s", got)
	}
	if got := sign(Schemes()[4], "secret", "", "", "hello world"); got != "v1=734cc62f32841568f45715aeb9f4d7891324e6d948e4c6c60c0621cdac48623a" {
		t.Errorf("CircleCI: %s", got)
	}
}

// Requests signed by the Standard Webhooks reference library (the code that
// senders run) verify, under both header prefixes, with a whsec_ secret and
// with a raw one.
func TestStandardWebhooksReferenceLibrary(t *testing.T) {
	now := time.Unix(1_750_000_000, 0)
	for _, tt := range []struct {
		name, secret string
		raw          bool // S without whsec_: the key is its bytes (NewWebhookRaw)
	}{
		{"whsec_ of 24 bytes (Svix)", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", false},
		{"whsec_ of 32 bytes (hookgate)", NewSecret(), false},
		{"whsec_ of 64 bytes", "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xa5}, 64)), false},
		{"whsec_ of 100 bytes (hashed key)", "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 100)), false},
		{"raw secret", "a secret typed by a person", true},
	} {
		for _, prefix := range []string{"webhook-", "svix-"} {
			t.Run(tt.name+"/"+prefix, func(t *testing.T) {
				var wh *standardwebhooks.Webhook
				var err error
				if tt.raw {
					wh, err = standardwebhooks.NewWebhookRaw([]byte(tt.secret))
				} else {
					wh, err = standardwebhooks.NewWebhook(tt.secret)
				}
				if err != nil {
					t.Fatal(err)
				}
				k := mustKey(t, tt.secret)
				for i, body := range []string{`{"type":"push"}`, "", strings.Repeat(`{"a":"ü"}`, 200)} {
					ts := now.Add(time.Duration(i-1) * time.Minute)
					id := "msg_" + strconv.Itoa(i)
					sig, err := wh.Sign(id, ts, []byte(body))
					if err != nil {
						t.Fatal(err)
					}
					other, _ := wh.Sign(id+"x", ts, []byte(body))
					for _, value := range []string{sig, other + " " + sig, sig + " " + other, "v2,abc " + sig} {
						h := headers(prefix+"id", id, prefix+"timestamp", strconv.FormatInt(ts.Unix(), 10), prefix+"signature", value)
						if err := k.Verify(Detect(h), h, []byte(body), now); err != nil {
							t.Errorf("body %d, %s: %v", i, value, err)
						}
					}
					h := headers(prefix+"id", id, prefix+"timestamp", strconv.FormatInt(ts.Unix(), 10), prefix+"signature", other)
					if err := k.Verify(Detect(h), h, []byte(body), now); err != reasonMismatch {
						t.Errorf("body %d, another id's signature: %v", i, err)
					}
				}
			})
		}
	}
}

// The reference library refuses what Verify refuses, for requests it signed
// and then had changed.
func TestStandardWebhooksAgreesWithReference(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	k := mustKey(t, secret)
	ts := time.Unix(1614265330, 0)
	good, _ := wh.Sign("msg_1", ts, []byte("{}"))
	for _, value := range []string{
		good, strings.ToUpper(good), "v1," + good[3:len(good)-2] + "A=", " " + good, good + " ", "v1, " + good[3:],
		"v1," + good[4:], good + "=", "v2" + good[2:], "v1=" + good[3:], good[3:], "", " ",
	} {
		hh := http.Header{}
		hh.Set("webhook-id", "msg_1")
		hh.Set("webhook-timestamp", "1614265330")
		hh.Set("webhook-signature", value)
		want := wh.VerifyIgnoringTimestamp([]byte("{}"), hh) == nil
		h := headers("webhook-id", "msg_1", "webhook-timestamp", "1614265330", "webhook-signature", value)
		if got := k.Verify(Detect(h), h, []byte("{}"), ts) == nil; got != want {
			t.Errorf("%q: Verify %v, reference library %v", value, got, want)
		}
	}
}

func TestVerify(t *testing.T) {
	rows := Schemes()
	github, bitbucket, std, flux, circleci, pagerduty, sentry := rows[0], rows[1], rows[2], rows[3], rows[4], rows[5], rows[6]
	const (
		secret = "s3cret"
		body   = `{"action":"opened"}`
		id     = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
		ts     = "1700000000"
	)
	now := time.Unix(1700000000, 0)
	ghSig := sign(github, secret, "", "", body)
	stdSig := sign(std, secret, id, ts, body)
	ciSig := sign(circleci, secret, "", "", body)
	pdSig := sign(pagerduty, secret, "", "", body)
	sentrySig := sign(sentry, secret, "", "", body)
	wrongSecret := sign(github, "s3cret ", "", "", body)
	tampered := sign(github, secret, "", "", body+"\n")
	hexOf := func(sig string) string { return sig[strings.IndexAny(sig, "=")+1:] }
	// stdAt signs for Standard Webhooks at the given timestamp.
	stdAt := func(ts string) []string {
		return []string{"webhook-id", id, "webhook-timestamp", ts, "webhook-signature", sign(std, secret, id, ts, body)}
	}
	tsAt := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	var never time.Time // the test's now
	for _, tt := range []struct {
		name string
		kv   []string
		now  time.Time // now when zero
		want reason
	}{
		{"github", []string{"X-Hub-Signature-256", ghSig}, never, reasonNone},
		{"github, uppercase hex", []string{"X-Hub-Signature-256", "sha256=" + strings.ToUpper(hexOf(ghSig))}, never, reasonNone},
		{"github, blanks around", []string{"X-Hub-Signature-256", " \t" + ghSig + " "}, never, reasonNone},
		{"github, wrong secret", []string{"X-Hub-Signature-256", wrongSecret}, never, reasonMismatch},
		{"github, tampered body", []string{"X-Hub-Signature-256", tampered}, never, reasonMismatch},
		{"github, no prefix", []string{"X-Hub-Signature-256", hexOf(ghSig)}, never, reasonMalformed},
		{"github, wrong prefix", []string{"X-Hub-Signature-256", "sha512=" + hexOf(ghSig)}, never, reasonMalformed},
		{"github, prefix in capitals", []string{"X-Hub-Signature-256", "SHA256=" + hexOf(ghSig)}, never, reasonMalformed},
		{"github, sha1", []string{"X-Hub-Signature-256", "sha1=" + hexOf(ghSig)[:40]}, never, reasonMalformed},
		{"github, bad hex", []string{"X-Hub-Signature-256", "sha256=" + hexOf(ghSig)[:62] + "zz"}, never, reasonMalformed},
		{"github, short hex", []string{"X-Hub-Signature-256", ghSig[:len(ghSig)-2]}, never, reasonMalformed},
		{"github, long hex", []string{"X-Hub-Signature-256", ghSig + "00"}, never, reasonMalformed},
		{"github, empty", []string{"X-Hub-Signature-256", ""}, never, reasonMalformed},
		{"github, no list", []string{"X-Hub-Signature-256", wrongSecret + "," + ghSig}, never, reasonMalformed},
		{"github, given twice", []string{"X-Hub-Signature-256", ghSig, "x-hub-signature-256", ghSig}, never, reasonDuplicate},
		{"github, with github's sha1 header", []string{"X-Hub-Signature", "sha1=0123", "X-Hub-Signature-256", ghSig}, never, reasonNone},
		{"github checked first, bitbucket's ignored", []string{"X-Hub-Signature-256", wrongSecret, "X-Hub-Signature", ghSig}, never, reasonMismatch},
		{"github checked first, a repeated lower header ignored", []string{"X-Hub-Signature-256", ghSig, "X-Signature", "a", "X-Signature", "b"}, never, reasonNone},

		{"bitbucket", []string{"X-Hub-Signature", ghSig}, never, reasonNone},
		{"bitbucket, sha1 refused", []string{"X-Hub-Signature", "sha1=" + hexOf(ghSig)[:40]}, never, reasonSHA1},
		{"bitbucket, wrong secret", []string{"X-Hub-Signature", wrongSecret}, never, reasonMismatch},
		{"bitbucket, given twice", []string{"X-Hub-Signature", ghSig, "X-Hub-Signature", "sha1=00"}, never, reasonDuplicate},

		{"standard webhooks", stdAt(ts), never, reasonNone},
		{"svix", []string{"svix-id", id, "svix-timestamp", ts, "svix-signature", stdSig}, never, reasonNone},
		{"standard webhooks, one good among bad", []string{"webhook-id", id, "webhook-timestamp", ts,
			"webhook-signature", "v1,bad v2," + stdSig[3:] + " v1a," + stdSig[3:] + " " + sign(std, "other", id, ts, body) + " " + stdSig + " v1,"}, never, reasonNone},
		{"standard webhooks, empty list", []string{"webhook-id", id, "webhook-timestamp", ts, "webhook-signature", ""}, never, reasonMalformed},
		{"standard webhooks, only spaces", []string{"webhook-id", id, "webhook-timestamp", ts, "webhook-signature", "   "}, never, reasonMalformed},
		{"standard webhooks, wrong secret", []string{"webhook-id", id, "webhook-timestamp", ts, "webhook-signature", sign(std, secret+"x", id, ts, body)}, never, reasonMismatch},
		{"standard webhooks, signed for another id", []string{"webhook-id", id + "x", "webhook-timestamp", ts, "webhook-signature", stdSig}, never, reasonMismatch},
		{"standard webhooks, signed for another time", []string{"webhook-id", id, "webhook-timestamp", tsAt(time.Second), "webhook-signature", stdSig}, never, reasonMismatch},
		{"standard webhooks, hex", []string{"webhook-id", id, "webhook-timestamp", ts, "webhook-signature", "v1," + hexOf(ghSig)}, never, reasonMalformed},
		{"standard webhooks, bad base64", []string{"webhook-id", id, "webhook-timestamp", ts, "webhook-signature", "v1,!" + stdSig[4:]}, never, reasonMalformed},
		{"standard webhooks, unpadded base64", []string{"webhook-id", id, "webhook-timestamp", ts, "webhook-signature", strings.TrimRight(stdSig, "=")}, never, reasonMalformed},
		{"standard webhooks, url base64", []string{"webhook-id", id, "webhook-timestamp", ts, "webhook-signature", "v1," + base64.URLEncoding.EncodeToString(macOf(std, secret, id, ts, body))}, never, stdURLReason(std, secret, id, ts, body)},
		{"standard webhooks, non-canonical base64", []string{"webhook-id", id, "webhook-timestamp", ts, "webhook-signature", nonCanonical(stdSig)}, never, reasonMalformed},
		{"standard webhooks, comma list", []string{"webhook-id", id, "webhook-timestamp", ts, "webhook-signature", "v1,abc," + stdSig}, never, reasonMalformed},
		{"standard webhooks, a tab is no separator", []string{"webhook-id", id, "webhook-timestamp", ts, "webhook-signature", "v1,abc \t" + stdSig}, never, reasonMalformed},
		{"standard webhooks, tab list", []string{"webhook-id", id, "webhook-timestamp", ts, "webhook-signature", "v1,abc\t" + stdSig}, never, reasonMalformed},
		{"standard webhooks, no id", []string{"webhook-timestamp", ts, "webhook-signature", stdSig}, never, reasonWebhookID},
		{"standard webhooks, empty id", []string{"webhook-id", "", "webhook-timestamp", ts, "webhook-signature", stdSig}, never, reasonWebhookID},
		{"standard webhooks, id with a space", []string{"webhook-id", "msg 1", "webhook-timestamp", ts, "webhook-signature", sign(std, secret, "msg 1", ts, body)}, never, reasonWebhookID},
		{"standard webhooks, id of 200", stdWithID(std, secret, strings.Repeat("a", 200), ts, body), never, reasonNone},
		{"standard webhooks, id of 201", stdWithID(std, secret, strings.Repeat("a", 201), ts, body), never, reasonWebhookID},
		{"standard webhooks, id not ASCII", stdWithID(std, secret, "msg_é", ts, body), never, reasonWebhookID},
		{"standard webhooks, svix id beside webhook signature", []string{"svix-id", id, "webhook-timestamp", ts, "webhook-signature", stdSig}, never, reasonWebhookID},
		{"standard webhooks, no timestamp", []string{"webhook-id", id, "webhook-signature", stdSig}, never, reasonTimestamp},
		{"standard webhooks, timestamp with a sign", stdAt("+" + ts), never, reasonTimestamp},
		{"standard webhooks, negative timestamp", stdAt("-1"), never, reasonTimestamp},
		{"standard webhooks, timestamp with a leading zero", stdAt("0" + ts), never, reasonTimestamp},
		{"standard webhooks, timestamp in milliseconds", stdAt(ts + "000"), never, reasonSkew},
		{"standard webhooks, timestamp too long", stdAt(ts + "000000000"), never, reasonTimestamp},
		{"standard webhooks, timestamp not a number", stdAt("17e8"), never, reasonTimestamp},
		{"standard webhooks, timestamp as a date", stdAt("2023-11-14T22:13:20Z"), never, reasonTimestamp},
		{"standard webhooks, 5 minutes old", stdAt(tsAt(-Tolerance)), never, reasonNone},
		{"standard webhooks, 5 minutes ahead", stdAt(tsAt(Tolerance)), never, reasonNone},
		{"standard webhooks, 5 minutes and 1s old", stdAt(tsAt(-Tolerance - time.Second)), never, reasonSkew},
		{"standard webhooks, 5 minutes and 1s ahead", stdAt(tsAt(Tolerance + time.Second)), never, reasonSkew},
		{"standard webhooks, 5 minutes and 1ns old", stdAt(ts), now.Add(Tolerance + 1), reasonSkew},
		{"standard webhooks, 5 minutes and 1ns ahead", stdAt(ts), now.Add(-Tolerance - 1), reasonSkew},
		{"standard webhooks, 5 minutes old to the ns", stdAt(ts), now.Add(Tolerance), reasonNone},
		{"standard webhooks, timestamp 0", stdAt("0"), never, reasonSkew},
		{"standard webhooks, signature given twice", append(stdAt(ts), "webhook-signature", stdSig), never, reasonDuplicate},
		{"standard webhooks, id given twice", append(stdAt(ts), "Webhook-Id", id), never, reasonDuplicate},
		{"standard webhooks, timestamp given twice", append(stdAt(ts), "Webhook-Timestamp", ts), never, reasonDuplicate},
		{"standard webhooks, webhook- checked before svix-", append(stdAt(ts), "svix-id", id, "svix-timestamp", ts, "svix-signature", "v1,bad"), never, reasonNone},
		{"standard webhooks, a bad webhook- set is not saved by svix-", []string{"webhook-id", id, "webhook-timestamp", ts, "webhook-signature", "v1,bad",
			"svix-id", id, "svix-timestamp", ts, "svix-signature", stdSig}, never, reasonMalformed},
		{"standard webhooks before flux", append(stdAt(ts), "X-Signature", ghSig), never, reasonNone},

		{"flux", []string{"X-Signature", ghSig}, never, reasonNone},
		{"flux, wrong secret", []string{"X-Signature", wrongSecret}, never, reasonMismatch},
		{"flux, sha1", []string{"X-Signature", "sha1=" + hexOf(ghSig)[:40]}, never, reasonMalformed},
		{"flux, sha512", []string{"X-Signature", "sha512=" + hexOf(ghSig) + hexOf(ghSig)}, never, reasonMalformed},
		{"flux, given twice", []string{"X-Signature", ghSig, "X-Signature", ghSig}, never, reasonDuplicate},

		{"circleci", []string{"circleci-signature", ciSig}, never, reasonNone},
		{"circleci, one good among bad", []string{"circleci-signature", "v0=abc,v1=zz," + sign(circleci, "x", "", "", body) + ", " + ciSig + ",v1="}, never, reasonNone},
		{"circleci, empty list", []string{"circleci-signature", ","}, never, reasonMalformed},
		{"circleci, empty", []string{"circleci-signature", ""}, never, reasonMalformed},
		{"circleci, wrong secret", []string{"circleci-signature", sign(circleci, "x", "", "", body)}, never, reasonMismatch},
		{"circleci, space list", []string{"circleci-signature", "v1=00 " + ciSig}, never, reasonMalformed},
		{"circleci, sha256= prefix", []string{"circleci-signature", ghSig}, never, reasonMalformed},
		{"circleci, given twice", []string{"circleci-signature", ciSig, "Circleci-Signature", ciSig}, never, reasonDuplicate},

		{"pagerduty", []string{"X-PagerDuty-Signature", pdSig}, never, reasonNone},
		{"pagerduty, rotated keys", []string{"X-PagerDuty-Signature", sign(pagerduty, "old", "", "", body) + "," + pdSig}, never, reasonNone},
		{"pagerduty, tampered body", []string{"X-PagerDuty-Signature", "v1=" + hexOf(tampered)}, never, reasonMismatch},
		{"pagerduty, bad hex", []string{"X-PagerDuty-Signature", "v1=" + strings.Repeat("g", 64)}, never, reasonMalformed},

		{"sentry", []string{"Sentry-Hook-Signature", sentrySig}, never, reasonNone},
		{"sentry, with a prefix", []string{"Sentry-Hook-Signature", "sha256=" + sentrySig}, never, reasonMalformed},
		{"sentry, wrong secret", []string{"Sentry-Hook-Signature", hexOf(wrongSecret)}, never, reasonMismatch},
		{"sentry, odd hex", []string{"Sentry-Hook-Signature", sentrySig[1:]}, never, reasonMalformed},

		{"no signature header", []string{"X-GitHub-Event", "push"}, never, reasonNoSignature},
	} {
		t.Run(tt.name, func(t *testing.T) {
			at := now
			if !tt.now.IsZero() {
				at = tt.now
			}
			h := headers(tt.kv...)
			err := mustKey(t, secret).Verify(Detect(h), h, []byte(body), at)
			if tt.want == reasonNone {
				if err != nil {
					t.Fatalf("Verify = %v; want nil", err)
				}
				return
			}
			if err != tt.want || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Verify = %v; want %v", err, tt.want)
			}
			// The reason never holds a header value.
			for _, v := range tt.kv {
				if len(v) > 3 && strings.Contains(err.Error(), v) {
					t.Fatalf("the reason %q holds %q", err, v)
				}
			}
		})
	}
	// A row that does not match the request's headers (a caller's slip).
	if err := mustKey(t, secret).Verify(flux, headers("X-Hub-Signature-256", ghSig), []byte(body), now); err != reasonNoSignature {
		t.Errorf("Verify with another row = %v", err)
	}
	if err := mustKey(t, secret).Verify(nil, headers(), []byte(body), now); err != reasonNoSignature {
		t.Errorf("Verify with no row = %v", err)
	}
	var none *Key
	if err := none.Verify(github, headers("X-Hub-Signature-256", ghSig), []byte(body), now); err != reasonNoKey {
		t.Errorf("Verify with no key = %v", err)
	}
	_ = bitbucket
}

// The key of Standard Webhooks is the decoded part of a whsec_ secret; every
// other row's is the bytes of the secret, prefix and all.
func TestKeyBytes(t *testing.T) {
	rows := Schemes()
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	decoded, _ := base64.StdEncoding.DecodeString(secret[6:])
	k := mustKey(t, secret)
	body := []byte(`{}`)
	now := time.Unix(1614265330, 0)
	for i, s := range rows {
		var kv []string
		hmacHex := func(key []byte) string { return hex.EncodeToString(hmacSHA256(key, body)) }
		switch s.HookAuth() {
		case StandardWebhooks:
			continue
		case CircleCI, PagerDuty:
			kv = []string{s.Header(), "v1=" + hmacHex(decoded), s.Header(), "v1=" + hmacHex([]byte(secret))}
		case Sentry:
			kv = []string{s.Header(), hmacHex(decoded), s.Header(), hmacHex([]byte(secret))}
		default:
			kv = []string{s.Header(), "sha256=" + hmacHex(decoded), s.Header(), "sha256=" + hmacHex([]byte(secret))}
		}
		bad, good := headers(kv[:2]...), headers(kv[2:]...)
		if err := k.Verify(s, good, body, now); err != nil {
			t.Errorf("row %d, keyed with the bytes of S: %v", i, err)
		}
		if err := k.Verify(s, bad, body, now); err != reasonMismatch {
			t.Errorf("row %d, keyed with the decoded part: %v", i, err)
		}
	}
	mac := base64.StdEncoding.EncodeToString(hmacSHA256([]byte(secret), []byte("msg_1.1614265330.{}")))
	h := headers("webhook-id", "msg_1", "webhook-timestamp", "1614265330", "webhook-signature", "v1,"+mac)
	if err := k.Verify(rows[2], h, body, now); err != reasonMismatch {
		t.Errorf("standard webhooks keyed with the bytes of a whsec_ S: %v", err)
	}
}

// The hand-made HMAC agrees with crypto/hmac for keys and messages of every
// length around SHA-256's block.
func TestMACAgreesWithCryptoHMAC(t *testing.T) {
	for _, klen := range []int{1, 2, 31, 32, 33, 63, 64, 65, 100, 128, 129, 1000} {
		for _, mlen := range []int{0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 300, 4096} {
			key := bytes.Repeat([]byte{byte(klen)}, klen)
			key[0] = 0xff
			msg := bytes.Repeat([]byte{byte(mlen), 'x'}, mlen)[:mlen]
			k := mustKey(t, string(key))
			var got [32]byte
			k.raw.sum(&got, nil, nil, msg)
			if want := hmacSHA256(key, msg); !bytes.Equal(got[:], want) {
				t.Fatalf("key %d, message %d: %x; crypto/hmac %x", klen, mlen, got, want)
			}
			k.raw.sum(&got, []byte("id"), []byte("12"), msg)
			if want := hmacSHA256(key, append([]byte("id.12."), msg...)); !bytes.Equal(got[:], want) {
				t.Fatalf("key %d, message id.12.%d: %x; crypto/hmac %x", klen, mlen, got, want)
			}
		}
	}
}

func TestKeyPrintsNothing(t *testing.T) {
	k := mustKey(t, "It's a Secret to Everybody")
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		want := fmt.Sprintf(verb, "signature.Key")
		if verb == "%#v" {
			want = "signature.Key" // GoString
		}
		if got := fmt.Sprintf(verb, k); got != want {
			t.Errorf("%s of a *Key is %s", verb, got)
		}
		if got := fmt.Sprintf(verb, *k); got != want {
			t.Errorf("%s of a Key is %s", verb, got)
		}
	}
}

func TestNewKey(t *testing.T) {
	for _, tt := range []struct {
		secret string
		want   error
	}{
		{"s", nil},
		{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", nil},
		{"whsec", nil},
		{"WHSEC_!!", nil}, // not the prefix: its bytes are the key
		{"", ErrSecretEmpty},
		{"whsec_", ErrSecretBase64},
		{"whsec_!!!!", ErrSecretBase64},
		{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS", ErrSecretBase64},
		{"whsec_MfKQ9r8GKYqrTwjU\nPD8ILPZIo2LaLaSw", ErrSecretBase64},
		{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw ", ErrSecretBase64},
		{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw=", ErrSecretBase64},
		{"whsec_" + base64.RawURLEncoding.EncodeToString([]byte{0xfb, 0xff}), ErrSecretBase64},
	} {
		k, err := NewKey([]byte(tt.secret))
		if err != tt.want || (err == nil) != (k != nil) {
			t.Errorf("NewKey(%q) = %v, %v; want %v", tt.secret, k, err, tt.want)
		}
	}
}

func mustKey(t testing.TB, secret string) *Key {
	t.Helper()
	k, err := NewKey([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// hmacSHA256, macOf and sign compute signatures with crypto/hmac, apart from
// the package's own HMAC, as each sender documents it.
func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

func macOf(s *Scheme, secret, id, ts, body string) []byte {
	if s.HookAuth() == StandardWebhooks {
		key := []byte(secret)
		if rest, ok := strings.CutPrefix(secret, "whsec_"); ok {
			key, _ = base64.StdEncoding.DecodeString(rest)
		}
		return hmacSHA256(key, []byte(id+"."+ts+"."+body))
	}
	return hmacSHA256([]byte(secret), []byte(body))
}

func sign(s *Scheme, secret, id, ts, body string) string {
	mac := macOf(s, secret, id, ts, body)
	switch s.HookAuth() {
	case StandardWebhooks:
		return "v1," + base64.StdEncoding.EncodeToString(mac)
	case CircleCI, PagerDuty:
		return "v1=" + hex.EncodeToString(mac)
	case Sentry:
		return hex.EncodeToString(mac)
	}
	return "sha256=" + hex.EncodeToString(mac)
}

func stdWithID(s *Scheme, secret, id, ts, body string) []string {
	return []string{"webhook-id", id, "webhook-timestamp", ts, "webhook-signature", sign(s, secret, id, ts, body)}
}

// stdURLReason: a URL-alphabet encoding is refused, unless it happens to
// spell the same as the standard one (no + or / in it).
func stdURLReason(s *Scheme, secret, id, ts, body string) reason {
	mac := macOf(s, secret, id, ts, body)
	if base64.URLEncoding.EncodeToString(mac) == base64.StdEncoding.EncodeToString(mac) {
		return reasonNone
	}
	return reasonMalformed
}

// nonCanonical changes the padding bits of a base64 signature: the same
// bytes, spelt another way.
func nonCanonical(sig string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	last := strings.IndexByte(alphabet, sig[len(sig)-2])
	return sig[:len(sig)-2] + string(alphabet[last|1]) + "="
}

// One Key serves many goroutines at once (run with -race).
func TestKeyConcurrentUse(t *testing.T) {
	k := mustKey(t, benchSecret)
	reqs := signedRequests(body300())
	done := make(chan error)
	for g := range 8 {
		go func() {
			var err error
			for i := range 200 {
				r := reqs[(g+i)%len(reqs)]
				body := []byte(body300())
				if i%2 == 1 {
					body[10] ^= 1
				}
				h := headers(r.kv...)
				got := k.Verify(Detect(h), h, body, benchNow)
				if (got == nil) != (i%2 == 0) {
					err = fmt.Errorf("%s, tampered %v: %v", r.name, i%2 == 1, got)
				}
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
