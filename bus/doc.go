// Package bus is hookgate's side of NATS: the embedded server, the client
// connection, the stream and bucket it needs, and publishing with acks.
package bus
