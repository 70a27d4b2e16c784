package auth

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// NextRevision returns the first revision at or after from that the bucket
// still holds, 0 if none, as the bucket stream's leader sees it (not a
// replica that may lag). bus.KVNextRevision implements it.
type NextRevision func(ctx context.Context, from uint64) (uint64, error)

// Watch applies every event of the bucket to the store until ctx ends, and
// then returns nil: a stopped watch is not an error. It returns an error when
// the watch cannot be created or ends by itself. synced is called once, when
// the watch has first delivered the bucket's current state.
//
// Every StaleAfter/2 it asks the bucket for its last revision. If the watch
// has not reached the revision the bucket had at the previous check, the
// watch is lagging or stalled (its consumer's node died, NATS restarted) and
// may be missing deletes: the store is distrusted, so every lookup reads the
// bucket, and the watch is recreated from the last revision it applied. Once
// the new watch has caught up, the store is trusted again. A delete is thus
// never served from memory for longer than about StaleAfter plus a round trip,
// whatever happens to the watch.
//
// Revisions removed from the bucket (PurgeDeletes) can never be delivered:
// when the watch looks behind, next asks the stream's leader whether any
// revision is left between the last one applied and the bucket's last; if
// none is, the watch is current. (nil next: no such check.)
func (s *Store) Watch(ctx context.Context, kv jetstream.KeyValue, next NextRevision, synced func()) error {
	// Until this watch has delivered the bucket's state, nothing in memory
	// is vouched for: a previous watch may have died, or none ran yet.
	s.Distrust("credential watch starting")
	w, err := kv.WatchAll(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("auth: watch bucket %q: %w", kv.Bucket(), err)
	}
	ws := &watchRun{s: s, kv: kv, next: next, w: w, catchingUp: true, synced: synced}
	defer func() { stopWatch(ws.w) }()

	prune := time.NewTicker(10 * time.Second)
	defer prune.Stop()
	check := time.NewTicker(s.cfg.StaleAfter / 2)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-prune.C:
			s.prune()
		case <-check.C:
			ws.check(ctx)
		case e, ok := <-ws.w.Updates():
			if !ok {
				if ctx.Err() != nil {
					// nats.go closes the updates when ctx ends, and this
					// select may see that before ctx.Done: stopped as asked.
					return nil
				}
				return fmt.Errorf("auth: watch of bucket %q ended", kv.Bucket())
			}
			ws.update(e)
		}
	}
}

// watchRun is one call of Watch: its watcher and how far it got.
type watchRun struct {
	s      *Store
	kv     jetstream.KeyValue
	next   NextRevision
	synced func()

	w          jetstream.KeyWatcher
	target     uint64 // the bucket's last revision at the previous check
	applied    uint64 // the highest revision this call applied
	catchingUp bool   // until the watch's initial state is delivered
	everSynced bool
}

// check compares the watch with the bucket: behind the revision the bucket
// had at the previous check, the store is distrusted and the watch
// recreated where it stopped; caught up, the store is trusted again.
func (r *watchRun) check(ctx context.Context) {
	if r.catchingUp {
		return
	}
	s := r.s
	last, err := bucketLastRevision(ctx, r.kv, s.cfg.StaleAfter/2)
	caughtUp := r.applied >= r.target
	if !caughtUp && err == nil && r.next != nil {
		rev, nerr := nextRevision(ctx, r.next, r.applied+1, s.cfg.StaleAfter/2)
		caughtUp = nerr == nil && (rev == 0 || rev > r.target) // nothing left up to target
	}
	switch {
	case err != nil:
		s.Distrust("bucket status: " + err.Error())
	case !caughtUp:
		s.Distrust("watch behind the bucket")
		// Do not wait for nats.go to notice (two missed heartbeats):
		// start a new watch where this one stopped.
		if nw, werr := r.kv.WatchAll(ctx, jetstream.ResumeFromRevision(r.applied+1)); werr == nil {
			stopWatch(r.w)
			r.w, r.catchingUp = nw, true
		}
	case !s.Trusted():
		s.Trust()
	}
	if err == nil {
		r.target = last
	} else {
		// Unknown: trust again only once a later check has seen
		// the watch reach the bucket's revision.
		r.target = math.MaxUint64
	}
}

// update applies one entry of the watch; nil marks the end of its initial
// state.
func (r *watchRun) update(e jetstream.KeyValueEntry) {
	if e == nil {
		// The watch has delivered everything up to its creation:
		// the next check compares with a revision read from now on.
		r.catchingUp, r.target = false, 0
		r.s.Trust() // current as of the watch's creation; checks keep it honest
		if !r.everSynced && r.synced != nil {
			r.synced()
		}
		r.everSynced = true
		return
	}
	if e.Revision() <= r.applied {
		// A replay: nats.go restarts an ordered consumer that missed
		// heartbeats from the last sequence it delivered, or from the
		// bucket's first one if it had delivered none. Revisions are
		// delivered in order, so everything up to the last applied
		// one is applied or replaced already; applying an old put
		// again would bring back a token until its delete came round.
		// (Counted per call: a bucket made anew starts again at 1.)
		return
	}
	r.s.Apply(e.Key(), e.Operation(), e.Value(), e.Revision())
	r.applied = e.Revision()
}

// stopWatch stops w and drains what it had queued: nats.go's callback may be
// blocked on the updates channel, holding the lock that the subscription's
// close handler needs to close that channel.
func stopWatch(w jetstream.KeyWatcher) {
	_ = w.Stop()
	go func(c <-chan jetstream.KeyValueEntry) {
		limit := time.After(time.Minute)
		for {
			select {
			case _, ok := <-c:
				if !ok {
					return
				}
			case <-limit:
				return
			}
		}
	}(w.Updates())
}

func nextRevision(ctx context.Context, next NextRevision, from uint64, timeout time.Duration) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return next(ctx, from)
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
