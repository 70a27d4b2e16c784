package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/bus"
	"github.com/hookgate/hookgate/ingest"
)

// This file sets up and keeps watching the gateway's JetStream: the stream,
// the credentials bucket and the watch that feeds the credential store.

// bootstrap makes sure the stream and bucket exist, then runs the credential
// watch for the gateway's life. NATS may be down at first: it retries.
func (g *Gateway) bootstrap(ctx context.Context) error {
	js, err := jetstream.New(g.nc)
	if err != nil {
		return fmt.Errorf("gateway: jetstream: %w", err)
	}
	var kv jetstream.KeyValue
	for attempt := 0; ; attempt++ {
		kv, err = g.ensure(ctx, js)
		if err == nil {
			break
		}
		if errors.Is(err, bus.ErrStreamRefused) {
			return fmt.Errorf("gateway: %w (lower --stream-max-bytes or give JetStream more storage)", err)
		}
		if attempt%20 == 0 {
			g.log.Warn("waiting for JetStream to set up the stream and bucket", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
	g.kv.Store(&kv)
	g.setup.Store(true)
	for {
		err := g.store.Watch(ctx, kv, bus.KVNextRevision(g.nc, g.cfg.TokensBucket), func() {
			g.synced.Store(true)
			g.log.Info("credential watch synced", "bucket", g.cfg.TokensBucket)
		})
		if ctx.Err() != nil {
			return nil
		}
		// The watch could not be (re)created: the cache may miss events from
		// now on, so stop trusting it until a new watch has synced.
		g.synced.Store(false)
		g.store.Distrust("credential watch stopped")
		g.log.Warn("credential watch stopped; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// ensure finds or creates the stream and the bucket.
func (g *Gateway) ensure(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stream, err := bus.EnsureStream(ctx, js, bus.StreamSpec{
		Name: g.cfg.Stream, SubjectPrefix: g.cfg.Ingest.SubjectPrefix, Replicas: g.cfg.Replicas, Duplicates: g.cfg.DedupWindow,
		MaxAge: g.cfg.StreamMaxAge, MaxBytes: g.cfg.StreamMaxBytes,
	})
	if err != nil {
		return nil, err
	}
	info := stream.CachedInfo()
	sc := info.Config
	g.Metrics.SetStream(info.State.Msgs, info.State.Bytes, noLimit(sc.MaxBytes))
	g.warnStreamDiffers(sc)
	g.fitBroker(sc.MaxMsgSize)
	g.followDuplicateWindow(sc.Duplicates)
	return bus.EnsureBucket(ctx, js, g.cfg.TokensBucket, g.cfg.Replicas)
}

// warnStreamDiffers names each setting of an existing stream that differs
// from the flags that would have created it: the stream keeps its own, and
// an operator who changed a flag should not believe it took effect.
func (g *Gateway) warnStreamDiffers(sc jetstream.StreamConfig) {
	if sc.Duplicates != g.cfg.DedupWindow {
		g.log.Warn("the existing stream keeps its own duplicate window; --dedup-window applies only when serve creates the stream",
			"stream", g.cfg.Stream, "duplicate_window", sc.Duplicates, "dedup_window_flag", g.cfg.DedupWindow)
	}
	if sc.Replicas != g.cfg.Replicas {
		g.log.Warn("the existing stream keeps its own replicas; --replicas applies only when serve creates the stream",
			"stream", g.cfg.Stream, "replicas", sc.Replicas, "replicas_flag", g.cfg.Replicas)
	}
	if sc.MaxAge != max(g.cfg.StreamMaxAge, 0) {
		g.log.Warn("the existing stream keeps its own max age; --stream-max-age applies only when serve creates the stream",
			"stream", g.cfg.Stream, "max_age", sc.MaxAge, "stream_max_age_flag", g.cfg.StreamMaxAge)
	}
	if noLimit(sc.MaxBytes) != noLimit(g.cfg.StreamMaxBytes) {
		g.log.Warn("the existing stream keeps its own max bytes; --stream-max-bytes applies only when serve creates the stream",
			"stream", g.cfg.Stream, "max_bytes", sc.MaxBytes, "stream_max_bytes_flag", g.cfg.StreamMaxBytes)
	}
}

// followDuplicateWindow gives the publisher the stream's own duplicate window
// (an existing stream keeps the operator's), which bounds its re-sends.
func (g *Gateway) followDuplicateWindow(d time.Duration) {
	p := g.pub.Load()
	if p == nil || d <= 0 || p.SetDuplicateWindow(d) == d {
		return
	}
	if d/2 < g.cfg.PublishTimeout {
		g.log.Warn("the stream's duplicate window is short: an unacknowledged publish is re-sent only in its first half, then waited for until --publish-timeout",
			"stream", g.cfg.Stream, "duplicate_window", d, "publish_timeout", g.cfg.PublishTimeout)
	}
}

// fitBroker makes --max-body agree with the broker: a body the broker would
// refuse must be a 413 at the door, never a 503 or 500 after it.
func (g *Gateway) fitBroker(streamMaxMsgSize int32) {
	maxPayload := g.nc.MaxPayload()
	before := g.handler.MaxBody()
	after := g.handler.FitBroker(maxPayload, int64(streamMaxMsgSize))
	if after < before {
		g.log.Warn("--max-body lowered to fit the broker: larger bodies get 413",
			"max_body", before, "now", after, "nats_max_payload", maxPayload,
			"stream_max_msg_size", streamMaxMsgSize, "header_allowance", ingest.HeaderAllowance)
	}
}

// setupCheckInterval is how often watchSetup looks for the stream and bucket.
const setupCheckInterval = 2 * time.Second

// watchSetup keeps /readyz true to the contract after bootstrap: the stream
// or the bucket can be deleted under a running gateway (by an operator, or
// lost with a cluster), and then the gateway is not ready until it is back.
// Only a definite "not found" counts; a disconnection is Ready's own check.
func (g *Gateway) watchSetup(ctx context.Context) error {
	js, err := jetstream.New(g.nc)
	if err != nil {
		return fmt.Errorf("gateway: jetstream: %w", err)
	}
	t := time.NewTicker(setupCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if !g.setup.Load() || !g.nc.IsConnected() {
			continue
		}
		missing, known := g.findSetup(ctx, js)
		if !known {
			continue
		}
		was := g.gone.Load()
		switch {
		case missing != "" && (was == nil || *was != missing):
			g.gone.Store(&missing)
			g.log.Error("not ready: webhooks cannot be stored until it is recreated", "missing", missing)
		case missing == "" && was != nil:
			g.gone.Store(nil)
			g.log.Info("stream and bucket are back", "stream", g.cfg.Stream, "bucket", g.cfg.TokensBucket)
		}
	}
}

// findSetup says which of the stream and bucket is missing ("" for none);
// known is false when JetStream did not answer either way.
func (g *Gateway) findSetup(ctx context.Context, js jetstream.JetStream) (missing string, known bool) {
	ctx, cancel := context.WithTimeout(ctx, setupCheckInterval)
	defer cancel()
	s, err := js.Stream(ctx, g.cfg.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return "stream " + g.cfg.Stream + " does not exist", true
	case err != nil:
		return "", false
	}
	info := s.CachedInfo()
	g.followDuplicateWindow(info.Config.Duplicates)
	g.Metrics.SetStream(info.State.Msgs, info.State.Bytes, noLimit(info.Config.MaxBytes))
	_, err = js.KeyValue(ctx, g.cfg.TokensBucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		return "credentials bucket " + g.cfg.TokensBucket + " does not exist", true
	case err != nil:
		return "", false
	}
	return "", true
}

// bucketSource reads the bucket once bootstrap has found it.
type bucketSource struct{ g *Gateway }

var errNoBucket = errors.New("gateway: credentials bucket not set up yet")

func (s bucketSource) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	kv := s.g.kv.Load()
	if kv == nil {
		return nil, errNoBucket
	}
	return (*kv).Get(ctx, key)
}

// noLimit writes "no byte limit" one way: -1.
func noLimit(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}
