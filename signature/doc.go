// Package signature verifies webhooks that their senders sign with a shared
// secret, row by row as the contract's table of senders that sign says.
//
// It is pure: it reads header values and bodies that the caller hands it and
// keeps nothing of them. The hot path (Headers.Add, Detect, Key.Verify,
// SenderID, Event, FormPayload into a large enough buffer) allocates nothing.
package signature
