#!/usr/bin/env bash
# The project's whole test run: what CI runs (.ci/run) and what the README
# tells a new user to run. It installs the Debian packages the tests need
# (real Prometheus, Alertmanager and promtool), then formats, vets, runs
# staticcheck, runs every test with the race detector, and fuzzes each fuzz
# target for a few seconds.
#
# --quick is the edit-test loop: gofmt, vet and `go test -short` (the tests
# that take seconds each are left out, see testing.Short in them), with no
# apt-get, no staticcheck and no fuzzing. It is not what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=false
case "${1:-}" in
  --quick) quick=true ;;
  "") ;;
  *) echo "usage: bash scripts/test.sh [--quick]" >&2; exit 2 ;;
esac

check_format() {
  echo "== gofmt"
  local unformatted
  unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
  if [ -n "$unformatted" ]; then
    echo "gofmt would change: $unformatted" >&2
    exit 1
  fi
  echo "== go vet"
  go vet ./...
}

if $quick; then
  check_format
  echo "== go test -short (quick loop: no slow tests, no race detector, no fuzzing)"
  go test -short -count=1 ./...
  echo "== quick tests passed (CI runs the whole suite: bash scripts/test.sh)"
  exit 0
fi

need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "== installing ${need[*]} from Debian"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

check_format

echo "== staticcheck"
# Pinned, and run with go run so it is not a dependency of the module.
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

echo "== go test -race"
go test -race -count=1 -timeout 15m ./...

echo "== allocation tests again, compiled as the release build is (its PGO profile)"
# PGO changes inlining and so escape analysis: sha256.Sum256 allocated per
# request in the PGO build only, while the plain test build showed 0 allocs.
go test -count=1 -pgo=cmd/hookgate/hookgate.pgo -run 'Allocat' ./auth ./ingest ./metrics

echo "== fuzz (each target a few seconds)"
# A count, not a duration: with a duration, go1.26's fuzz coordinator can
# report "context deadline exceeded" as the time runs out, with no failing
# input (golang/go#75804, fixed in go1.27); it failed CI once at 635fbf6.
# -timeout still bounds a target that turns slow.
fuzztime=${FUZZTIME:-30000x}
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "-- $pkg $target"
    if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -timeout 5m "$pkg" > /tmp/hookgate-fuzz.log 2>&1; then
      grep -v '^fuzz: elapsed' /tmp/hookgate-fuzz.log >&2
      echo "fuzz target $target failed; the input is saved under testdata/fuzz/$target" >&2
      exit 1
    fi
  done
done
echo "== all tests passed"
