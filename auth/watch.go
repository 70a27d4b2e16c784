package auth

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Watch applies every event of the bucket to the store until ctx ends. synced
// is called once, when the watch has delivered the bucket's current state.
// The watcher is an ordered consumer: nats.go recreates it after a reconnect
// or a missed heartbeat, so one call lasts the process's life.
//
// Every StaleAfter/2 it also asks the bucket for its last revision. If the
// watch has not reached a revision the bucket had one check earlier, the
// watch is lagging or stalled and may be missing deletes: the store is
// distrusted (every lookup reads the bucket) until the watch catches up. So a
// revoked token is served from memory for at most about StaleAfter after the
// watch stops delivering, whatever the cause.
func (s *Store) Watch(ctx context.Context, kv jetstream.KeyValue, synced func()) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("auth: watch bucket %q: %w", kv.Bucket(), err)
	}
	defer w.Stop()

	prune := time.NewTicker(10 * time.Second)
	defer prune.Stop()
	check := time.NewTicker(s.cfg.StaleAfter / 2)
	defer check.Stop()
	var target uint64 // the bucket's last revision at the previous check
	initial := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-prune.C:
			s.Prune()
		case <-check.C:
			if initial {
				continue
			}
			last, err := bucketLastRevision(ctx, kv, s.cfg.StaleAfter/2)
			caughtUp := s.LastRevision() >= target
			switch {
			case err != nil || !caughtUp:
				if s.Trusted() {
					s.Distrust()
				}
			case !s.Trusted():
				s.Trust()
			}
			if err == nil {
				target = last
			} else {
				// Unknown: trust again only once a check after this one
				// has seen the watch reach the bucket's revision.
				target = math.MaxUint64
			}
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

func bucketLastRevision(ctx context.Context, kv jetstream.KeyValue, timeout time.Duration) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := kv.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("auth: bucket status: %w", err)
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return 0, fmt.Errorf("auth: bucket status of type %T", st)
	}
	return bs.StreamInfo().State.LastSeq, nil
}
