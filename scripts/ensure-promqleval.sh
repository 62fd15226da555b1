#!/usr/bin/env bash
# Build tools/promqleval (evaluates PromQL with Prometheus' own engine over given series; see
# tools/promqleval/main.go) into the cache, once per source version. The tests use it to check
# the queries voxplane renders (the agent pools' KEDA ScaledObjects) as Prometheus computes them.
#
# The binary is keyed by a hash of go.mod, go.sum and main.go, so an edit rebuilds it and an
# unchanged checkout reuses it. go.mod pins github.com/prometheus/prometheus v0.305.0 (the 3.5 LTS
# line's engine); go.sum is committed and the build never rewrites either file (-mod=readonly).
# Modules come from the Go module proxy (GOPROXY) unless already in the module cache: ~25 s to
# download and ~1.5 min to build on 2 cores the first time, a 19 MB binary; seconds afterwards.
#
# Idempotent. Progress goes to stderr; --print-path prints exactly the binary path on stdout.
#
# Environment:
#   VOXPLANE_CACHE   cache root (default: $HOME/.cache/voxplane)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/tools/promqleval"
CACHE_DIR="${VOXPLANE_CACHE:-$HOME/.cache/voxplane}"
BIN_DIR="$CACHE_DIR/bin"

print_path=0

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
log() { printf 'ensure-promqleval: %s\n' "$*" >&2; }
die() { printf 'ensure-promqleval: error: %s\n' "$*" >&2; exit 1; }

usage() {
    cat >&2 <<USAGE
usage: $(basename "$0") [--print-path]
  Builds tools/promqleval into $BIN_DIR/promqleval-<source hash> (cached).
  --print-path prints the binary path on stdout.
USAGE
}

while (($#)); do
    case "$1" in
        --print-path) print_path=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage; die "unknown argument: $1" ;;
    esac
    shift
done

ensure_source_tool promqleval "$SRC" "first build: ~2 min on 2 cores"

if ((print_path)); then
    printf '%s\n' "$TOOL_BIN"
fi
