package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamSpec is the stream serve creates when it is missing.
type StreamSpec struct {
	Name          string
	SubjectPrefix string
	Replicas      int
	Duplicates    time.Duration
	MaxAge        time.Duration // <= 0: none
	MaxBytes      int64         // <= 0: none
}

// ErrStreamRefused wraps JetStream's refusal to create the stream as
// specified (not enough storage for its limits, replicas a single server
// cannot have): trying again will not help, unlike a JetStream that is not
// up yet.
var ErrStreamRefused = errors.New("bus: JetStream refused to create the stream")

// refusalCodes are the JetStream API error codes that make ErrStreamRefused.
var refusalCodes = map[jetstream.ErrorCode]bool{
	10047: true, // storage resources exceeded
	10028: true, // memory resources exceeded
	10052: true, // invalid stream configuration
	10074: true, // replicas > 1 not supported in non-clustered mode
	10113: true, // account requires a stream max bytes
}

// EnsureStream returns the stream, creating it when missing. An existing
// stream is left exactly as it is: its limits are the operator's.
func EnsureStream(ctx context.Context, js jetstream.JetStream, spec StreamSpec) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, spec.Name)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("bus: look up stream %q: %w", spec.Name, err)
	}
	s, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        spec.Name,
		Description: "webhooks accepted by hookgate",
		Subjects:    []string{spec.SubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Replicas:    max(spec.Replicas, 1),
		Duplicates:  spec.Duplicates,
		MaxAge:      max(spec.MaxAge, 0),
		MaxBytes:    noneIsMinusOne(spec.MaxBytes),
		Discard:     jetstream.DiscardOld, // the oldest go first: a full stream never refuses a webhook
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return js.Stream(ctx, spec.Name) // another gateway won the race
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && refusalCodes[apiErr.ErrorCode] {
		return nil, fmt.Errorf("%w %q: %s", ErrStreamRefused, spec.Name, apiErr.Description)
	}
	if err != nil {
		return nil, fmt.Errorf("bus: create stream %q: %w", spec.Name, err)
	}
	return s, nil
}

func noneIsMinusOne(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// EnsureBucket returns the credentials bucket, creating it when missing.
func EnsureBucket(ctx context.Context, js jetstream.JetStream, name string, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, name)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("bus: look up bucket %q: %w", name, err)
	}
	kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      name,
		Description: "hookgate credentials: tok.<sha256> and cred.<id>",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
		// Per-key TTLs: NATS itself removes a rotated token's record when its
		// grace period ends (the Registry writes it with a TTL), leaving a
		// marker the watch applies as a delete. Needs nats-server 2.11+.
		LimitMarkerTTL: time.Minute,
	})
	if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return js.KeyValue(ctx, name)
	}
	if err != nil {
		return nil, fmt.Errorf("bus: create bucket %q: %w", name, err)
	}
	return kv, nil
}
