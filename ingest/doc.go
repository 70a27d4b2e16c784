// Package ingest is the webhook listener: routes, limits, validation and
// replies, in the contract's order of checks.
package ingest
