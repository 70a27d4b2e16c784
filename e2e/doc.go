// Package e2e holds end-to-end tests that run a whole hookgate gateway
// in-process against the real tools around it: Prometheus scraping its
// /metrics, promtool linting them, Alertmanager posting webhooks through it,
// and the OpenAPI document in api/openapi.yaml checked against real replies.
//
// The external tools are not optional: a test whose binary is missing fails
// with a message naming the Debian package to install (CI installs them).
// Every process a test starts listens on a free 127.0.0.1 port, keeps its data
// in the test's temp dir and is stopped at the end of the test.
package e2e
