// Package auth turns webhook tokens into credentials: the token format, the
// credential records of the key-value bucket, the cache in front of the bucket
// and the watch that keeps the cache current.
package auth
