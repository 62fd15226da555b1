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

for f in go.mod go.sum main.go; do
    [[ -f "$SRC/$f" ]] || die "$SRC/$f missing"
done
hash="$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-16)"
BIN="$BIN_DIR/promqleval-$hash"

build() {
    if [[ -x "$BIN" ]]; then
        log "promqleval cached: $BIN"
        return 0
    fi
    command -v go >/dev/null 2>&1 || die "go not found on PATH; needed to build tools/promqleval"
    mkdir -p "$BIN_DIR"
    exec 9>"$BIN_DIR/.promqleval-build.lock"
    if command -v flock >/dev/null 2>&1; then
        flock 9
    fi
    if [[ -x "$BIN" ]]; then  # another process finished the build while we waited
        log "promqleval cached: $BIN"
        return 0
    fi
    local build_dir start=$SECONDS
    build_dir="$(mktemp -d "$CACHE_DIR/build-promqleval.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: the directory of this build
    trap "rm -rf '$build_dir'" EXIT
    log "building promqleval $hash (first build: ~2 min on 2 cores: Prometheus' promql and tsdb packages)"
    if ! (cd "$SRC" && GOWORK=off GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly" \
        go build -trimpath -ldflags='-s -w' -o "$build_dir/promqleval" .) >"$build_dir/go-build.log" 2>&1; then
        explain_go_failure "$build_dir/go-build.log"
        die "building tools/promqleval failed: ${FAIL_REASON:-see above}"
    fi
    mv -f "$build_dir/promqleval" "$BIN"  # same filesystem: an atomic rename
    log "built $BIN in $((SECONDS - start))s"
}

build

if ((print_path)); then
    printf '%s\n' "$BIN"
fi
