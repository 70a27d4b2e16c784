// Package peer is the benchmark's "hand-written peer": the webhook endpoint
// one would write in an afternoon with the standard library, net/http, a map
// of tokens and a synchronous JetStream publish per request. It is a yardstick
// for hookgate's throughput, not a second implementation of the contract.
package peer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Cred is what a token stands for.
type Cred struct {
	ID  string
	Org string
}

// Handler serves POST /v1/hits/{app}.
type Handler struct {
	JS      jetstream.JetStream
	Tokens  map[string]Cred // token -> credential; read only while serving
	Prefix  string          // subject prefix; subjects are <prefix>.<org>.<app>.hits
	MaxBody int64
	Timeout time.Duration // publish timeout

	seq atomic.Uint64
}

// ServeHTTP handles one request: method, path, token, body, publish, 202.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	app, ok := strings.CutPrefix(r.URL.Path, "/v1/hits/")
	if !ok || app == "" || strings.Contains(app, "/") {
		http.Error(w, `{"error":"not_found"}`, http.StatusNotFound)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, `{"error":"method_not_allowed"}`, http.StatusMethodNotAllowed)
		return
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	cred, known := h.Tokens[tok]
	if !ok || !known {
		http.Error(w, `{"error":"invalid_token"}`, http.StatusUnauthorized)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, h.MaxBody+1))
	if err != nil || int64(len(body)) > h.MaxBody || !json.Valid(body) {
		http.Error(w, `{"error":"invalid_body"}`, http.StatusBadRequest)
		return
	}
	id := "peer-" + strconv.FormatUint(h.seq.Add(1), 10)
	msg := nats.NewMsg(h.Prefix + "." + cred.Org + "." + app + ".hits")
	msg.Data = body
	msg.Header.Set(jetstream.MsgIDHeader, id)
	msg.Header.Set("Hook-Org", cred.Org)
	msg.Header.Set("Hook-App", app)
	msg.Header.Set("Hook-Credential", cred.ID)
	msg.Header.Set("Hook-Received-At", time.Now().UTC().Format(time.RFC3339Nano))
	ctx, cancel := context.WithTimeout(r.Context(), h.Timeout)
	defer cancel()
	ack, err := h.JS.PublishMsg(ctx, msg)
	if err != nil {
		w.Header().Set("Retry-After", "1")
		http.Error(w, `{"error":"unavailable"}`, http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, `{"id":%q,"stream":%q,"seq":%d,"duplicate":%t}`, id, ack.Stream, ack.Sequence, ack.Duplicate)
}
