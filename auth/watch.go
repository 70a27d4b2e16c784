package auth

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Watch applies every event of the bucket to the store until ctx ends. synced
// is called once, when the watch has first delivered the bucket's current
// state.
//
// Every StaleAfter/2 it asks the bucket for its last revision. If the watch
// has not reached the revision the bucket had at the previous check, the
// watch is lagging or stalled (its consumer's node died, NATS restarted) and
// may be missing deletes: the store is distrusted, so every lookup reads the
// bucket, and the watch is recreated from the last revision it applied. Once
// the new watch has caught up, the store is trusted again. A delete is thus
// never served from memory for longer than about StaleAfter plus a round trip,
// whatever happens to the watch.
func (s *Store) Watch(ctx context.Context, kv jetstream.KeyValue, synced func()) error {
	// Until this watch has delivered the bucket's state, nothing in memory
	// is vouched for: a previous watch may have died, or none ran yet.
	s.Distrust("credential watch starting")
	// covered is a revision up to which every bucket revision has been
	// applied or is gone from the bucket. Without it, a bucket whose newest
	// revisions were removed (PurgeDeletes) would look ahead of the watch
	// forever. It is credited with pendingCovered, the bucket's last
	// revision read before the current watch was created, only once that
	// watch has delivered an entry with nothing pending after it
	// (Delta 0), or its end-of-initial-state marker before any entry (the
	// bucket had nothing to deliver). The marker alone is not proof:
	// nats.go sends it after as many entries as were pending at creation,
	// and an ordered consumer reset during that delivery replays history,
	// so the count can be reached early.
	var covered, pendingCovered uint64
	delivered := false // the current watch has delivered an entry
	watch := func(lastRev uint64, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
		pendingCovered, delivered = lastRev, false
		return kv.WatchAll(ctx, opts...)
	}
	first, _ := bucketLastRevision(ctx, kv, s.cfg.StaleAfter/2) // 0 when unknown: no claim
	w, err := watch(first)
	if err != nil {
		return fmt.Errorf("auth: watch bucket %q: %w", kv.Bucket(), err)
	}
	defer func() { w.Stop() }()

	prune := time.NewTicker(10 * time.Second)
	defer prune.Stop()
	check := time.NewTicker(s.cfg.StaleAfter / 2)
	defer check.Stop()
	var target uint64  // the bucket's last revision at the previous check
	catchingUp := true // until the watch's initial state is delivered
	everSynced := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-prune.C:
			s.Prune()
		case <-check.C:
			if catchingUp {
				continue
			}
			last, err := bucketLastRevision(ctx, kv, s.cfg.StaleAfter/2)
			caughtUp := max(s.LastRevision(), covered) >= target
			switch {
			case err != nil:
				s.Distrust("bucket status: " + err.Error())
			case !caughtUp:
				s.Distrust("watch behind the bucket")
				// Do not wait for nats.go to notice (two missed heartbeats):
				// start a new watch where this one stopped.
				// last was read before this new watch is created.
				if nw, werr := watch(last, jetstream.ResumeFromRevision(s.LastRevision()+1)); werr == nil {
					w.Stop()
					w, catchingUp = nw, true
				}
			case !s.Trusted():
				s.Trust()
			}
			if err == nil {
				target = last
			} else {
				// Unknown: trust again only once a later check has seen
				// the watch reach the bucket's revision.
				target = math.MaxUint64
			}
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("auth: watch of bucket %q ended", kv.Bucket())
			}
			if e == nil {
				// The watch has delivered its initial state: the next
				// check compares with a revision read from now on.
				catchingUp, target = false, 0
				if !delivered {
					covered = max(covered, pendingCovered)
				}
				s.Trust() // current as of the watch's creation; checks keep it honest
				if !everSynced && synced != nil {
					synced()
				}
				everSynced = true
				continue
			}
			s.Apply(e.Key(), e.Operation(), e.Value(), e.Revision())
			if delivered = true; e.Delta() == 0 {
				// Nothing was left to deliver after this entry, so nothing up
				// to the revision read before the watch started either.
				covered = max(covered, pendingCovered)
			}
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
