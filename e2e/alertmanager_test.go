package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/internal/hgtest"
)

// captured is one request the capture server received.
type captured struct {
	header http.Header
	body   []byte
}

// amPayload is the part of Alertmanager's webhook payload (version 4) the
// test looks at.
type amPayload struct {
	Version  string `json:"version"`
	Status   string `json:"status"`
	Receiver string `json:"receiver"`
	GroupKey string `json:"groupKey"`
	Alerts   []struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		Fingerprint string            `json:"fingerprint"`
	} `json:"alerts"`
	GroupLabels map[string]string `json:"groupLabels"`
}

// TestAlertmanagerWebhookThroughGateway has a real Alertmanager post its
// webhook to the gateway with a hits token limited to app "alerts", and checks
// the stored NATS message: Alertmanager's payload byte for byte, with the
// gateway's headers.
//
// The same receiver has a second webhook_config pointing at a capture server
// that records the raw body. Both webhook_configs of one receiver get the same
// payload from the same flush of the same aggregation group, so the bodies
// must be equal. (A second receiver reached with `continue: true` would not
// do: the payload carries "receiver" and a "groupKey" that includes the route,
// so its bytes differ from the first receiver's.)
func TestAlertmanagerWebhookThroughGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: runs a real Alertmanager through two alert groups")
	}
	alertmanager := requireTool(t, "prometheus-alertmanager", "prometheus-alertmanager", "alertmanager")
	g := hgtest.StartGateway(t, "", nil)
	reg := hgtest.Registry(t, g.NATSURL(), "")
	cred := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, App: "alerts", Name: "alertmanager"})

	captures := make(chan captured, 16)
	capture := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case captures <- captured{header: r.Header.Clone(), body: body}:
		default: // the test reads at most a few; never block Alertmanager
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(capture.Close)

	// Subscribe before anything can fire.
	const subject = "hooks.acme.alerts.hits"
	nc, js := hgtest.Connect(t, g.NATSURL())
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}

	dir := t.TempDir()
	config := fmt.Sprintf(`route:
  receiver: hookgate
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hookgate
    webhook_configs:
      - url: %q
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: %q
      - url: %q
        send_resolved: true
`, g.URL+"/v1/hits/alerts", cred.Token, capture.URL+"/capture")
	configFile := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	_, base := startServer(t, alertmanager, func(listen string) []string {
		return []string{
			"--config.file=" + configFile,
			"--storage.path=" + t.TempDir(),
			"--web.listen-address=" + listen,
			"--cluster.listen-address=", // no clustering: no gossip port, no settle wait
			"--log.level=info",
		}
	}, "/-/ready")

	const alertname = "HookgateE2EDiskFull"
	fire := func(endsAt string) {
		t.Helper()
		alert := map[string]any{
			"labels":       map[string]string{"alertname": alertname, "severity": "page", "instance": "db-1"},
			"annotations":  map[string]string{"summary": "disk \"/var\" is 97% full <ünïcödé>"},
			"generatorURL": "http://127.0.0.1/graph?g0.expr=disk",
		}
		if endsAt != "" {
			alert["endsAt"] = endsAt
		}
		body, _ := json.Marshal([]any{alert})
		resp, err := httpClient.Post(base+"/api/v2/alerts", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("post alert: %v", err)
		}
		defer resp.Body.Close()
		reply, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("post alert: %d %s", resp.StatusCode, reply)
		}
	}
	// next waits for the next NATS message and the next captured body.
	next := func(what string) (*nats.Msg, captured) {
		t.Helper()
		msg, err := sub.NextMsg(30 * time.Second)
		if err != nil {
			t.Fatalf("%s: no message on %s: %v; gateway log:\n%s", what, subject, err, g.Logs.String())
		}
		select {
		case c := <-captures:
			return msg, c
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the capture server got nothing", what)
		}
		return nil, captured{}
	}

	fire("")
	msg, capt := next("firing")

	// The stored message, read back from the stream.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, "HOOKS")
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	stored, err := stream.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		t.Fatalf("stored message: %v", err)
	}
	t.Logf("stored message seq %d, %d bytes, headers %v\nbody: %s", stored.Sequence, len(stored.Data), stored.Header, stored.Data)
	if !bytes.Equal(stored.Data, capt.body) {
		t.Errorf("stored data differs from the body Alertmanager sent to the capture server:\nstored:   %q\ncaptured: %q", stored.Data, capt.body)
	}
	if !bytes.Equal(msg.Data, stored.Data) {
		t.Errorf("subscribed data differs from stored data:\nsub:    %q\nstored: %q", msg.Data, stored.Data)
	}
	if ct := capt.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Alertmanager sent Content-Type %q", ct)
	}

	var payload amPayload
	if err := json.Unmarshal(stored.Data, &payload); err != nil {
		t.Fatalf("stored data is not JSON: %v: %q", err, stored.Data)
	}
	if payload.Version != "4" || payload.Status != "firing" || payload.Receiver != "hookgate" ||
		len(payload.Alerts) != 1 || payload.Alerts[0].Labels["alertname"] != alertname ||
		payload.Alerts[0].Status != "firing" || payload.GroupLabels["alertname"] != alertname {
		t.Errorf("not the firing payload of %s: %+v", alertname, payload)
	}

	// Alertmanager sends no Idempotency-Key: the stored message carries the
	// credential and nothing else; organization, application and kind are
	// the subject's, the time the stream's.
	for name, h := range map[string]nats.Header{"stored": stored.Header, "subscribed": msg.Header} {
		if len(h) != 1 || h.Get("Hook-Credential") != cred.ID {
			t.Errorf("%s headers %v, want only Hook-Credential %s", name, h, cred.ID)
		}
	}
	if stored.Time.IsZero() || time.Since(stored.Time) > time.Minute {
		t.Errorf("stored at %v", stored.Time)
	}
	if v := stored.Header.Get("Hook-Idempotency-Key"); v != "" {
		t.Errorf("Hook-Idempotency-Key %q without an Idempotency-Key sent", v)
	}

	// send_resolved: ending the alert sends a "resolved" payload the same way.
	fire(time.Now().UTC().Add(-time.Second).Format(time.RFC3339Nano))
	msg, capt = next("resolved")
	if !bytes.Equal(msg.Data, capt.body) {
		t.Errorf("resolved: data differs from the captured body:\nnats:     %q\ncaptured: %q", msg.Data, capt.body)
	}
	payload = amPayload{}
	if err := json.Unmarshal(msg.Data, &payload); err != nil {
		t.Fatalf("resolved: not JSON: %v: %q", err, msg.Data)
	}
	if payload.Version != "4" || payload.Status != "resolved" || len(payload.Alerts) != 1 ||
		payload.Alerts[0].Labels["alertname"] != alertname {
		t.Errorf("not the resolved payload of %s: %+v", alertname, payload)
	}
	if got := msg.Header.Get("Hook-Credential"); got != cred.ID {
		t.Errorf("resolved: Hook-Credential %q, want %q", got, cred.ID)
	}
}
