#!/usr/bin/env bash
# Build one of this repository's Go tools (tools/NAME: see tools/README.md) into the cache, once
# per source version. The binary is keyed by a hash of go.mod, go.sum and main.go, so an edit
# rebuilds it and an unchanged checkout reuses it; go.sum is committed and the build never
# rewrites either file (-mod=readonly). Modules come from the Go module proxy (GOPROXY) unless
# already in the module cache.
#
# Idempotent. Progress goes to stderr; --print-path prints exactly the binary path on stdout.
#
# Environment:
#   VOXPLANE_CACHE   cache root (default: $HOME/.cache/voxplane)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${VOXPLANE_CACHE:-$HOME/.cache/voxplane}"
BIN_DIR="$CACHE_DIR/bin"

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat >&2 <<USAGE
usage: $(basename "$0") NAME [--print-path]
  Builds tools/NAME into $BIN_DIR/NAME-<source hash> (cached); NAME is one of: $(cd "$ROOT/tools" && echo */ | tr -d /).
  --print-path prints the binary path on stdout.
USAGE
}

# What a first build costs on 2 cores, for the progress line.
first_build_hint() {
    case "$1" in
        promqleval) echo "first build: ~2 min on 2 cores (Prometheus' engine)" ;;
        routeprobe | lkconfig) echo "first build: under a minute when livekit-server's build is cached" ;;
        *) echo "first build: a few minutes" ;;
    esac
}

name="" print_path=0
while (($#)); do
    case "$1" in
        --print-path) print_path=1 ;;
        -h | --help) usage; exit 0 ;;
        -*) usage; die "unknown argument: $1" ;;
        *) [[ -z "$name" ]] || { usage; die "one tool at a time"; }; name="$1" ;;
    esac
    shift
done
[[ -n "$name" ]] || { usage; die "which tool?"; }
[[ "$name" =~ ^[a-z0-9-]+$ && -d "$ROOT/tools/$name" ]] || die "no tool tools/$name"

ensure_source_tool "$name" "$ROOT/tools/$name" "$(first_build_hint "$name")"

if ((print_path)); then
    printf '%s\n' "$TOOL_BIN"
fi
