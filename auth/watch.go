package auth

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Watch applies every event of the bucket's tok. keys to the store until ctx
// ends. synced is called once, when the watch has delivered the bucket's
// current state. The watcher is an ordered consumer: nats.go recreates it after
// a reconnect or a missed heartbeat, so one call lasts the process's life.
func (s *Store) Watch(ctx context.Context, kv jetstream.KeyValue, synced func()) error {
	w, err := kv.Watch(ctx, TokenKeyPrefix+"*")
	if err != nil {
		return fmt.Errorf("auth: watch bucket %q: %w", kv.Bucket(), err)
	}
	defer w.Stop()

	prune := time.NewTicker(10 * time.Second)
	defer prune.Stop()
	initial := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-prune.C:
			s.Prune()
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("auth: watch of bucket %q ended", kv.Bucket())
			}
			if e == nil {
				if initial && synced != nil {
					synced()
				}
				initial = false
				continue
			}
			s.Apply(e.Key(), e.Operation(), e.Value(), e.Revision())
		}
	}
}
