#!/usr/bin/env bash
# Build (once), cache and print the path of the real peers our tests run against.
#
#   scripts/peers.sh collector   # our collector, from collector/builder-config.yaml (ocb)
#   scripts/peers.sh jaeger      # Jaeger v2 all-in-one
#   scripts/peers.sh all         # both, one path per line
#
# Binaries are cached outside the repo under $MODULETRACE_PEERS_DIR
# (default ~/.cache/moduletrace/peers), keyed by version (and, for the collector, by a hash of
# the manifest), so later runs reuse them. Only the Go module proxy is needed.
#
# Grafana Tempo is not built: its module is AGPL-licensed and this workplace's registry policy
# marks it "not to use". See README.md (Tempo) for what that means for the tests.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${MODULETRACE_PEERS_DIR:-$HOME/.cache/moduletrace/peers}
builder_version=v0.161.0
# Jaeger's v2 tags do not match its module path; v1.76.0 is the same commit as v2.13.0, the
# last dual-tagged release, and the version of cmd/jaeger (the v2 binary) the proxy serves here.
jaeger_version=v1.76.0
mkdir -p "$cache"
export GOFLAGS=-buildvcs=false CGO_ENABLED=0

log() { echo "peers: $*" >&2; }

build_collector() {
  local sum out tmp
  sum=$( (echo "$builder_version"; cat "$here/collector/builder-config.yaml") | sha256sum | cut -c1-12)
  out="$cache/otelcol-moduletrace-$builder_version-$sum"
  if [[ ! -x "$out/otelcol-moduletrace" ]]; then
    log "building the collector (first time: several minutes) into $out"
    if [[ ! -x "$cache/builder-$builder_version/builder" ]]; then
      GOBIN="$cache/builder-$builder_version" go install "go.opentelemetry.io/collector/cmd/builder@$builder_version" >&2
    fi
    tmp=$(mktemp -d)
    sed "s#^\(  output_path:\).*#\1 $tmp/build#" "$here/collector/builder-config.yaml" > "$tmp/manifest.yaml"
    "$cache/builder-$builder_version/builder" --config="$tmp/manifest.yaml" >&2
    mkdir -p "$out"
    mv "$tmp/build/otelcol-moduletrace" "$out/otelcol-moduletrace"
    rm -rf "$tmp"
  fi
  echo "$out/otelcol-moduletrace"
}

build_jaeger() {
  local out="$cache/jaeger-$jaeger_version"
  if [[ ! -x "$out/jaeger" ]]; then
    log "building Jaeger $jaeger_version (first time: several minutes) into $out"
    # Its go.mod has replace directives, so `go install pkg@version` refuses it: build it as the
    # main module from its downloaded source instead.
    local src tmp
    src=$(go mod download -json "github.com/jaegertracing/jaeger@$jaeger_version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    tmp=$(mktemp -d)
    cp -r "$src/." "$tmp/" && chmod -R u+w "$tmp"
    mkdir -p "$out"
    (cd "$tmp" && go build -trimpath -ldflags "-s -w" -o "$out/jaeger" ./cmd/jaeger) >&2
    rm -rf "$tmp"
  fi
  echo "$out/jaeger"
}

case "${1:-all}" in
  collector) build_collector ;;
  jaeger) build_jaeger ;;
  all) build_collector; build_jaeger ;;
  *) echo "usage: scripts/peers.sh [collector|jaeger|all]" >&2; exit 2 ;;
esac
