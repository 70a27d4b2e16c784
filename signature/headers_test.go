package signature

import (
	"bufio"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestSenderID(t *testing.T) {
	long := strings.Repeat("d", 200)
	for _, tt := range []struct {
		name string
		kv   []string
		want string // "" for none
	}{
		{"none", []string{"Idempotency-Key", "k", "X-Request-Id", "r"}, ""},
		{"github", []string{"X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"}, "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
		{"standard webhooks", []string{"webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"}, "msg_p5jXN8AQM9LWM0D4loKWxJek"},
		{"svix", []string{"Svix-Id", "msg_1"}, "msg_1"},
		{"github first", []string{"svix-id", "s", "webhook-id", "w", "X-Github-Delivery", "g"}, "g"},
		{"webhook-id before svix-id", []string{"svix-id", "s", "webhook-id", "w"}, "w"},
		{"200 characters", []string{"webhook-id", long}, long},
		{"201 characters: not used", []string{"webhook-id", long + "d"}, ""},
		{"empty: not used", []string{"X-GitHub-Delivery", ""}, ""},
		{"a space: not used", []string{"X-GitHub-Delivery", "a b"}, ""},
		{"a tab: not used", []string{"X-GitHub-Delivery", "a\tb"}, ""},
		{"not ASCII: not used", []string{"X-GitHub-Delivery", "é"}, ""},
		{"DEL: not used", []string{"X-GitHub-Delivery", "a\x7f"}, ""},
		{"the first present is bad: no fallback", []string{"X-GitHub-Delivery", "a b", "webhook-id", "w"}, ""},
		{"given twice: not used", []string{"webhook-id", "w", "Webhook-Id", "w"}, ""},
		{"the edges of visible ASCII", []string{"webhook-id", "!~"}, "!~"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := headers(tt.kv...).SenderID(); string(got) != tt.want || (got == nil) != (tt.want == "") {
				t.Fatalf("SenderID = %q; want %q", got, tt.want)
			}
		})
	}
}

func TestEvent(t *testing.T) {
	long := strings.Repeat("e", 100)
	for _, tt := range []struct {
		name string
		kv   []string
		want string
	}{
		{"none", []string{"X-Event", "push"}, ""},
		{"github", []string{"X-GitHub-Event", "push"}, "push"},
		{"gitlab, with its space", []string{"X-Gitlab-Event", "Deployment Hook"}, "Deployment Hook"},
		{"gitea", []string{"X-Gitea-Event", "push"}, "push"},
		{"bitbucket", []string{"X-Event-Key", "repo:push"}, "repo:push"},
		{"circleci", []string{"Circleci-Event-Type", "workflow-completed"}, "workflow-completed"},
		{"sentry", []string{"Sentry-Hook-Resource", "issue"}, "issue"},
		{"the contract's order", []string{"Sentry-Hook-Resource", "6", "Circleci-Event-Type", "5", "X-Event-Key", "4",
			"X-Gitea-Event", "3", "X-Gitlab-Event", "2", "X-GitHub-Event", "1"}, "1"},
		{"gitlab before gitea", []string{"X-Gitea-Event", "3", "X-Gitlab-Event", "2"}, "2"},
		{"gitea before bitbucket", []string{"X-Event-Key", "4", "X-Gitea-Event", "3"}, "3"},
		{"bitbucket before circleci", []string{"Circleci-Event-Type", "5", "X-Event-Key", "4"}, "4"},
		{"circleci before sentry", []string{"Sentry-Hook-Resource", "6", "Circleci-Event-Type", "5"}, "5"},
		{"100 characters", []string{"X-GitHub-Event", long}, long},
		{"101 characters: none", []string{"X-GitHub-Event", long + "e"}, ""},
		{"empty: none", []string{"X-GitHub-Event", ""}, ""},
		{"a space alone is printable", []string{"X-GitHub-Event", " "}, " "},
		{"a tab: none", []string{"X-GitHub-Event", "a\tb"}, ""},
		{"not ASCII: none", []string{"X-GitHub-Event", "pûsh"}, ""},
		{"the first present is bad: no fallback", []string{"X-GitHub-Event", "\x01", "X-Gitlab-Event", "Push Hook"}, ""},
		{"given twice: none", []string{"X-GitHub-Event", "push", "x-github-event", "push"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := headers(tt.kv...).Event(); string(got) != tt.want || (got == nil) != (tt.want == "") {
				t.Fatalf("Event = %q; want %q", got, tt.want)
			}
		})
	}
}

// Add matches names in ASCII case only, and only whole names.
func TestHeadersAdd(t *testing.T) {
	var h Headers
	h.Add([]byte("WEBHOOK-ID"), []byte("a"))
	h.Add([]byte("webhooK-iD"), []byte("b"))
	h.Add([]byte("webhook-id "), []byte("c"))
	h.Add([]byte("webhook-i"), []byte("c"))
	h.Add([]byte("x-github-\u212a"), []byte("c")) // the Kelvin sign is no k
	h.Add([]byte(strings.Repeat("x", 300)), []byte("c"))
	if h.n[fWebhookID] != 2 || string(h.val[fWebhookID]) != "b" {
		t.Fatalf("webhook-id counted %d, last %q; want 2, b", h.n[fWebhookID], h.val[fWebhookID])
	}
	for f := range numFields {
		if f != fWebhookID && h.n[f] != 0 {
			t.Fatalf("%s counted", fieldNames[f])
		}
	}
	for range 300 {
		h.Add([]byte("webhook-id"), []byte("x"))
	}
	if h.n[fWebhookID] != 2 {
		t.Fatalf("the count wraps: %d", h.n[fWebhookID])
	}
	h.Reset()
	for f := range numFields {
		if h.n[f] != 0 || h.val[f] != nil {
			t.Fatal("Reset left something")
		}
	}
}

// The one pass a fasthttp handler makes: every header, repeats and all.
func TestHeadersFromFasthttp(t *testing.T) {
	body := `{"zen":"Keep it logically awesome."}`
	sig := sign(Schemes()[0], "secret", "", "", body)
	raw := "POST /v1/hits/web?credential=c1 HTTP/1.1\r\nHost: h\r\nX-GitHub-Event: ping\r\n" +
		"X-GitHub-Delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958\r\nX-Hub-Signature: sha1=0123\r\n" +
		"X-Hub-Signature-256: " + sig + "\r\nContent-Type: application/json\r\n" +
		"Content-Length: " + itoa(len(body)) + "\r\n\r\n" + body
	var req fasthttp.Request
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	var h Headers
	for k, v := range req.Header.All() {
		h.Add(k, v)
	}
	s := Detect(&h)
	if s != Schemes()[0] {
		t.Fatalf("Detect = %v", s)
	}
	if err := mustKey(t, "secret").Verify(s, &h, req.Body(), timeZero); err != nil {
		t.Fatal(err)
	}
	if string(h.Event()) != "ping" || string(h.SenderID()) != "72d3162e-cc78-11e3-81ab-4c9367dc0958" {
		t.Fatalf("event %q, sender id %q", h.Event(), h.SenderID())
	}

	// The same signature header twice.
	raw = strings.Replace(raw, "X-Hub-Signature: sha1=0123", "x-hub-signature-256: "+sig, 1)
	req.Reset()
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	h.Reset()
	for k, v := range req.Header.All() {
		h.Add(k, v)
	}
	if err := mustKey(t, "secret").Verify(Detect(&h), &h, req.Body(), timeZero); err != reasonDuplicate {
		t.Fatalf("two X-Hub-Signature-256: %v", err)
	}
}
