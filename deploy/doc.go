// Package deploy holds hookgate's deployment files (the Dockerfile, the
// Kubernetes manifests, the Prometheus rules, the Grafana dashboard and the
// files docker-compose.yml mounts) and the tests that check them without
// Docker. It has no code.
package deploy
