// Package faults holds fault-injection tests for hookgate: real NATS servers
// embedded in the test process (a three-node JetStream cluster on loopback, or
// a single node that is stopped and restarted) with whole gateways in front of
// them, checking the issue "Nothing lost, nobody let in": no accepted webhook
// is lost or stored twice when a node dies under load, and a revoked token
// stops working on every gateway, including across NATS outages.
//
// The tests live in package faults_test; this file only names the package.
package faults
