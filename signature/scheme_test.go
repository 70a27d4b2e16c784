package signature

import "testing"

// The contract's table of senders that sign, row for row.
func TestSchemesMirrorTheContract(t *testing.T) {
	want := []struct {
		hookAuth, sender, header string
		form                     bool
	}{
		{"hub-signature", "GitHub, Gitea, Forgejo", "X-Hub-Signature-256", true},
		{"hub-signature", "Bitbucket Cloud", "X-Hub-Signature", true},
		{"standard-webhooks", "Standard Webhooks senders (GitLab's signing token, Svix and others)", "webhook-signature", false},
		{"flux", "Flux generic-hmac", "X-Signature", false},
		{"circleci", "CircleCI", "circleci-signature", false},
		{"pagerduty", "PagerDuty v3", "X-PagerDuty-Signature", false},
		{"sentry", "Sentry", "Sentry-Hook-Signature", false},
	}
	rows := Schemes()
	if len(rows) != len(want) {
		t.Fatalf("%d rows; the contract has %d", len(rows), len(want))
	}
	for i, w := range want {
		s := rows[i]
		if s.HookAuth() != w.hookAuth || s.Sender() != w.sender || s.Header() != w.header || s.FormBody() != w.form {
			t.Errorf("row %d = %q, %q, %q, form %v; want %q, %q, %q, form %v", i,
				s.HookAuth(), s.Sender(), s.Header(), s.FormBody(), w.hookAuth, w.sender, w.header, w.form)
		}
		// The row's header selects it, in any case.
		h := headers(upper(w.header), "x")
		if got := Detect(h); got != s {
			t.Errorf("Detect(%s) = %v; want row %d", w.header, got, i)
		}
	}
}

func TestDetect(t *testing.T) {
	rows := Schemes()
	github, bitbucket, std, flux, circleci, pagerduty, sentry := rows[0], rows[1], rows[2], rows[3], rows[4], rows[5], rows[6]
	for _, tt := range []struct {
		name string
		kv   []string
		want *Scheme
	}{
		{"none", nil, nil},
		{"other headers only", []string{"Authorization", "Bearer x", "X-GitHub-Event", "push", "webhook-id", "msg_1", "webhook-timestamp", "1"}, nil},
		{"github", []string{"X-Hub-Signature-256", "sha256=00"}, github},
		{"bitbucket", []string{"X-Hub-Signature", "sha256=00"}, bitbucket},
		{"bitbucket sha1 still selects its row", []string{"X-Hub-Signature", "sha1=00"}, bitbucket},
		{"github sends both; -256 first", []string{"X-Hub-Signature", "sha1=00", "X-Hub-Signature-256", "sha256=00"}, github},
		{"standard webhooks", []string{"webhook-signature", "v1,x"}, std},
		{"svix", []string{"Svix-Signature", "v1,x"}, std},
		{"flux", []string{"X-Signature", "sha256=00"}, flux},
		{"circleci", []string{"Circleci-Signature", "v1=00"}, circleci},
		{"pagerduty", []string{"X-Pagerduty-Signature", "v1=00"}, pagerduty},
		{"sentry", []string{"Sentry-Hook-Signature", "00"}, sentry},
		{"all: the table's first", []string{"Sentry-Hook-Signature", "0", "X-PagerDuty-Signature", "0", "circleci-signature", "0",
			"X-Signature", "0", "svix-signature", "0", "webhook-signature", "0", "X-Hub-Signature", "0", "X-Hub-Signature-256", "0"}, github},
		{"standard webhooks before flux", []string{"X-Signature", "0", "webhook-signature", "0"}, std},
		{"flux before circleci", []string{"circleci-signature", "0", "X-Signature", "0"}, flux},
		{"circleci before pagerduty", []string{"X-PagerDuty-Signature", "0", "circleci-signature", "0"}, circleci},
		{"pagerduty before sentry", []string{"Sentry-Hook-Signature", "0", "X-PagerDuty-Signature", "0"}, pagerduty},
		{"given twice still selects", []string{"X-Signature", "a", "x-signature", "b"}, flux},
		{"empty value still selects", []string{"X-Signature", ""}, flux},
		{"a similar name does not", []string{"X-Hub-Signature-2566", "sha256=00", "X-Signatures", "x"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Detect(headers(tt.kv...)); got != tt.want {
				t.Fatalf("Detect = %v; want %v", got, tt.want)
			}
		})
	}
}

// headers gathers name, value pairs as a handler would in its one pass.
func headers(kv ...string) *Headers {
	var h Headers
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add([]byte(kv[i]), []byte(kv[i+1]))
	}
	return &h
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
