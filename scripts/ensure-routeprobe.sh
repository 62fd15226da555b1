#!/usr/bin/env bash
# Build tools/routeprobe (asks livekit-server's IOInfo service over Redis what livekit-sip asks;
# see tools/routeprobe/main.go) into the cache, once per source version.
#
# The binary is keyed by a hash of go.mod, go.sum and main.go, so an edit rebuilds it and an
# unchanged checkout reuses it. go.mod pins livekit-server v1.13.5's own protocol, psrpc and
# go-redis versions, so the probe speaks exactly the server's wire format; go.sum is committed
# and the build never rewrites either file (-mod=readonly). Modules come from the Go module
# proxy (GOPROXY) unless already in the module cache; packages livekit-server's build compiled
# come from the Go build cache.
#
# Idempotent. Progress goes to stderr; --print-path prints exactly the binary path on stdout.
#
# Environment:
#   VOXPLANE_CACHE   cache root (default: $HOME/.cache/voxplane)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/tools/routeprobe"
CACHE_DIR="${VOXPLANE_CACHE:-$HOME/.cache/voxplane}"
BIN_DIR="$CACHE_DIR/bin"

print_path=0

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
log() { printf 'ensure-routeprobe: %s\n' "$*" >&2; }
die() { printf 'ensure-routeprobe: error: %s\n' "$*" >&2; exit 1; }

usage() {
    cat >&2 <<USAGE
usage: $(basename "$0") [--print-path]
  Builds tools/routeprobe into $BIN_DIR/routeprobe-<source hash> (cached).
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

ensure_source_tool routeprobe "$SRC" "first build: under a minute when livekit-server's build is cached"

if ((print_path)); then
    printf '%s\n' "$TOOL_BIN"
fi
