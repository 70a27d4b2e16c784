package auth

// WaitCache waits until the cache has taken the writes queued so far
// (ristretto applies them asynchronously), so that a test can look at it.
func (s *Store) WaitCache() { s.cache.Wait() }
