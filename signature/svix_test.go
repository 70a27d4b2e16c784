package signature

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

// Requests signed by Svix's own Go library (the code Svix's senders run)
// verify under both header prefixes, with Svix's whsec_ secrets and a raw
// one; a changed body, id or time does not.
func TestSvixLibrary(t *testing.T) {
	now := time.Unix(1_750_000_000, 0)
	for _, tt := range []struct {
		name, secret string
		raw          bool // S without whsec_: the key is its bytes (NewWebhookRaw)
	}{
		{"whsec_ of 24 bytes (Svix's own)", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", false},
		{"whsec_ of 32 bytes (hookgate)", NewSecret(), false},
		{"raw secret", "a secret typed by a person", true},
	} {
		for _, prefix := range []string{"svix-", "webhook-"} {
			t.Run(tt.name+"/"+prefix, func(t *testing.T) {
				var wh *svix.Webhook
				var err error
				if tt.raw {
					wh, err = svix.NewWebhookRaw([]byte(tt.secret))
				} else {
					wh, err = svix.NewWebhook(tt.secret)
				}
				if err != nil {
					t.Fatal(err)
				}
				k := mustKey(t, tt.secret)
				for i, body := range []string{`{"type":"invoice.paid"}`, "", strings.Repeat(`{"a":"ü"}`, 200)} {
					ts := now.Add(time.Duration(i-1) * 4 * time.Minute)
					id := "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W" + strconv.Itoa(i)
					sig, err := wh.Sign(id, ts, []byte(body))
					if err != nil {
						t.Fatal(err)
					}
					tsv := strconv.FormatInt(ts.Unix(), 10)
					h := headers(prefix+"id", id, prefix+"timestamp", tsv, prefix+"signature", sig)
					if err := k.Verify(Detect(h), h, []byte(body), now); err != nil {
						t.Errorf("body %d: %v", i, err)
					}
					if err := k.Verify(Detect(h), h, []byte(body+" "), now); err != reasonMismatch {
						t.Errorf("body %d tampered: %v; want %v", i, err, reasonMismatch)
					}
					h = headers(prefix+"id", id+"x", prefix+"timestamp", tsv, prefix+"signature", sig)
					if err := k.Verify(Detect(h), h, []byte(body), now); err != reasonMismatch {
						t.Errorf("body %d under another id: %v; want %v", i, err, reasonMismatch)
					}
					h = headers(prefix+"id", id, prefix+"timestamp", strconv.FormatInt(ts.Unix()+1, 10), prefix+"signature", sig)
					if err := k.Verify(Detect(h), h, []byte(body), now); err != reasonMismatch {
						t.Errorf("body %d at another time: %v; want %v", i, err, reasonMismatch)
					}
				}
			})
		}
	}
}

// Svix's library and Verify agree on requests it signed and then had changed.
func TestSvixAgreesWithLibrary(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	k := mustKey(t, secret)
	ts := time.Unix(1614265330, 0)
	good, _ := wh.Sign("msg_1", ts, []byte("{}"))
	other, _ := wh.Sign("msg_2", ts, []byte("{}"))
	for _, value := range []string{
		good, other, other + " " + good, good + " " + other, "v2,abc " + good, strings.ToUpper(good),
		"v1," + good[3:len(good)-2] + "A=", "v1," + good[4:], "v2" + good[2:], good[3:],
	} {
		hh := http.Header{}
		hh.Set("svix-id", "msg_1")
		hh.Set("svix-timestamp", "1614265330")
		hh.Set("svix-signature", value)
		want := wh.VerifyIgnoringTimestamp([]byte("{}"), hh) == nil
		h := headers("svix-id", "msg_1", "svix-timestamp", "1614265330", "svix-signature", value)
		if got := k.Verify(Detect(h), h, []byte("{}"), ts) == nil; got != want {
			t.Errorf("%q: Verify %v, Svix's library %v", value, got, want)
		}
	}
}
