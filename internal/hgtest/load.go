package hgtest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Reply is what a sender saw of one webhook.
type Reply struct {
	Key        string // its Idempotency-Key
	Code       int    // 0: no reply (Err says why: refused, reset, timed out)
	RetryAfter string
	Body       []byte
	At         time.Time // when it was sent
	Took       time.Duration
	Err        error
}

// SendHit posts body to baseURL/v1/hits/app with a bearer token and, unless
// key is empty, an Idempotency-Key. It does not fail the test: any goroutine
// may call it.
func SendHit(client *http.Client, baseURL, app, token, key string, body []byte) (r Reply) {
	r = Reply{Key: key, At: time.Now()}
	defer func() { r.Took = time.Since(r.At) }()
	req, err := http.NewRequest(http.MethodPost, baseURL+"/v1/hits/"+app, bytes.NewReader(body))
	if err != nil {
		r.Err = err
		return r
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := client.Do(req)
	if err != nil {
		r.Err = err
		return r
	}
	defer resp.Body.Close()
	if r.Body, err = io.ReadAll(resp.Body); err != nil {
		r.Err = fmt.Errorf("read reply: %w", err)
		return r
	}
	r.Code, r.RetryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
	return r
}

// Load is senders posting hits webhooks to app "web", each with an id of its
// own ("s<sender>-<n>") in its body and, unless the load is key-less, as its
// Idempotency-Key, to its base URLs in turn. A Reply's Key is that id.
type Load struct {
	stop    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	mu      sync.Mutex
	replies []Reply
}

// StartLoad starts senders that post with token until Stop or until max
// requests were sent in all. The test's end stops them too.
func StartLoad(t testing.TB, baseURLs []string, token string, senders, max int) *Load {
	return startLoad(t, baseURLs, token, senders, max, true)
}

// StartLoadWithoutKeys is StartLoad with no Idempotency-Key: as monitoring
// senders post.
func StartLoadWithoutKeys(t testing.TB, baseURLs []string, token string, senders, max int) *Load {
	return startLoad(t, baseURLs, token, senders, max, false)
}

func startLoad(t testing.TB, baseURLs []string, token string, senders, max int, keyed bool) *Load {
	l := &Load{stop: make(chan struct{})}
	var sent atomic.Int64
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: senders}}
	for s := range senders {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				if sent.Add(1) > int64(max) {
					return
				}
				id := fmt.Sprintf("s%d-%d", s, i)
				key := id
				if !keyed {
					key = ""
				}
				r := SendHit(client, baseURLs[(s+i)%len(baseURLs)], "web", token, key, []byte(`{"n":"`+id+`"}`))
				r.Key = id
				if r.Code == 0 {
					time.Sleep(5 * time.Millisecond) // a refused connection returns at once: no busy loop
				}
				l.mu.Lock()
				l.replies = append(l.replies, r)
				l.mu.Unlock()
			}
		}()
	}
	t.Cleanup(func() { l.Stop() })
	return l
}

// Count returns how many replies so far match (all of them for nil).
func (l *Load) Count(match func(Reply) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.replies {
		if match == nil || match(r) {
			n++
		}
	}
	return n
}

// WaitCount waits up to timeout until n replies match (what names them for
// the failure message).
func (l *Load) WaitCount(t testing.TB, timeout time.Duration, n int, what string, match func(Reply) bool) {
	t.Helper()
	WaitFor(t, timeout, func() error {
		if got := l.Count(match); got < n {
			return fmt.Errorf("%d of %d %s", got, n, what)
		}
		return nil
	})
}

// Stop stops the senders, waits for the requests in flight and returns every
// reply.
func (l *Load) Stop() []Reply {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.replies
}

// Codes counts replies by status code (0: no reply).
func Codes(replies []Reply) map[int]int {
	m := map[int]int{}
	for _, r := range replies {
		m[r.Code]++
	}
	return m
}

// CheckStoredOnce fails the test unless the webhook of every 202 is in stored
// (StoredByKey) exactly once and no webhook is stored twice; it returns the
// number of 202s.
func CheckStoredOnce(t testing.TB, replies []Reply, stored map[string][]uint64) (accepted int) {
	t.Helper()
	for _, r := range replies {
		if r.Code == http.StatusAccepted {
			accepted++
			if n := len(stored[r.Key]); n != 1 {
				t.Errorf("202 for %s but the stream holds it %d times", r.Key, n)
			}
		}
	}
	for k, seqs := range stored {
		if len(seqs) > 1 {
			t.Errorf("key %s stored %d times, at %v", k, len(seqs), seqs)
		}
	}
	return accepted
}
