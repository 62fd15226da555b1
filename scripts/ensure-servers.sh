#!/usr/bin/env bash
# Make sure the binaries for local/test LiveKit servers exist:
#   * redis-server  (Debian package; livekit-server needs Redis for SIP, egress, multi-node)
#   * livekit-server, built from the Go module proxy at a pinned release and cached.
#
# Idempotent: a second run does nothing but checks. Progress goes to stderr; stdout stays
# empty unless --print-path is given, in which case it is exactly the livekit-server path.
#
# Environment:
#   VOXPLANE_CACHE             cache root (default: $HOME/.cache/voxplane)
#   VOXPLANE_LIVEKIT_VERSION   livekit-server release tag to build (default: pinned below)
#   VOXPLANE_FORCE_WRAPPER_BUILD=1   always use the wrapper-module route (to test it)
set -euo pipefail

# Pinned release. v1.13.5 has no `replace` directives, so plain `go install` works.
# v1.13.6 to v1.13.11 need module versions the Go module proxy does not serve ("This module
# version is not available"): livekit/protocol pseudo-versions and, from v1.13.6 on, `replace`d
# LiveKit forks of pion/webrtc, ice and dtls. So v1.13.5 is the newest that builds from it.
readonly DEFAULT_LIVEKIT_VERSION="v1.13.5"
readonly LIVEKIT_MODULE="github.com/livekit/livekit-server"
readonly LIVEKIT_PKG="${LIVEKIT_MODULE}/cmd/server"

LIVEKIT_VERSION="${VOXPLANE_LIVEKIT_VERSION:-$DEFAULT_LIVEKIT_VERSION}"
CACHE_DIR="${VOXPLANE_CACHE:-$HOME/.cache/voxplane}"
BIN_DIR="$CACHE_DIR/bin"
LIVEKIT_BIN="$BIN_DIR/livekit-server-$LIVEKIT_VERSION"

print_path=0
BUILD_DIR=""

log() { printf 'ensure-servers: %s\n' "$*" >&2; }
die() { printf 'ensure-servers: error: %s\n' "$*" >&2; exit 1; }

usage() {
    cat >&2 <<EOF
usage: $(basename "$0") [--print-path]
  Installs redis-server (apt) if missing and builds livekit-server $LIVEKIT_VERSION into
  $BIN_DIR (cached). --print-path prints the livekit-server binary path on stdout.
EOF
}

while (($#)); do
    case "$1" in
        --print-path) print_path=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage; die "unknown argument: $1" ;;
    esac
    shift
done

# Run a command as root: directly when we are root, else through sudo (non-interactive).
as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        return 1
    fi
}

apt_install_redis() {
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends redis-server
}

ensure_redis() {
    if command -v redis-server >/dev/null 2>&1; then
        log "redis-server present: $(command -v redis-server)"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 ||
        die "redis-server missing and apt-get not available; install redis-server yourself"
    log "installing redis-server with apt-get"
    local apt_log
    apt_log="$(mktemp)"
    # The first try may fail only because package lists were never fetched: update once, retry.
    if ! apt_install_redis >"$apt_log" 2>&1; then
        log "apt-get install failed; running apt-get update and retrying"
        if ! as_root apt-get update -q >>"$apt_log" 2>&1; then
            tail -n 5 "$apt_log" >&2
            rm -f "$apt_log"
            die "apt-get update failed (needs root or passwordless sudo)"
        fi
        if ! apt_install_redis >>"$apt_log" 2>&1; then
            tail -n 5 "$apt_log" >&2
            rm -f "$apt_log"
            die "apt-get install redis-server failed"
        fi
    fi
    rm -f "$apt_log"
    command -v redis-server >/dev/null 2>&1 || die "redis-server still not on PATH after apt-get install"
    # The package starts a system instance on :6379 where init allows it. We run our own
    # instances on free ports, so stop and disable the system one.
    if [[ -d /run/systemd/system ]]; then
        as_root systemctl disable --now redis-server >/dev/null 2>&1 || true
    elif command -v service >/dev/null 2>&1; then
        as_root service redis-server stop >/dev/null 2>&1 || true
    fi
    log "redis-server installed: $(command -v redis-server)"
}

# Print the tail of a go log to stderr and set FAIL_REASON to a one-line explanation.
FAIL_REASON=""
explain_go_failure() {
    local log="$1" missing
    tail -n 12 "$log" >&2
    # The module proxy answers 403/404/410 for module versions it does not serve.
    missing="$(grep -m1 -oE '[^[:space:]]+@[^[:space:]:]+: reading [^[:space:]]+: (403|404|410)' "$log" | cut -d: -f1 || true)"
    if [[ -n "$missing" ]]; then
        FAIL_REASON="module $missing is not available from the Go module proxy"
    else
        FAIL_REASON="$(grep -m1 -E '^(go: |# |.*\.go:[0-9]+)' "$log" || tail -n 1 "$log")"
    fi
}

# Route 1: plain `go install pkg@version`. Go refuses this when the module's go.mod has
# replace/exclude directives; returns 2 then, so the caller falls back to route 2.
build_with_go_install() {
    local work="$1" out_bin="$2" log="$1/go-install.log"
    if GOBIN="$work" go install -trimpath -ldflags='-s -w' "$LIVEKIT_PKG@$LIVEKIT_VERSION" >"$log" 2>&1; then
        mv -f "$work/server" "$out_bin"
        return 0
    fi
    if grep -q 'replace directives\|exclude directives' "$log"; then
        log "go install refused: $LIVEKIT_MODULE $LIVEKIT_VERSION has replace/exclude directives"
        return 2
    fi
    explain_go_failure "$log"
    return 1
}

# Route 2: a throwaway module that requires livekit-server at the pinned version and copies
# its (non-local) replace directives, then `go build`s the command package.
build_with_wrapper_module() {
    local wrapdir="$1" out_bin="$2" log="$1/go-build.log" modfile
    log "building through a wrapper module in $wrapdir"
    mkdir -p "$wrapdir"
    modfile="$(go mod download -json "$LIVEKIT_MODULE@$LIVEKIT_VERSION" 2>"$log" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
    if [[ -z "$modfile" || ! -f "$modfile" ]]; then
        explain_go_failure "$log"
        return 1
    fi
    # Explicit && chains: `set -e` does not apply inside a function called from `||`.
    (
        cd "$wrapdir" &&
            go mod init voxplane.local/livekit-wrapper &&
            # Copy replace directives, single-line and block form; local-path targets
            # (./ ../ /) cannot resolve outside the original repository, so drop them.
            {
                awk '
                    /^replace[[:space:]]*\($/ { inblock = 1; next }
                    inblock && /^\)/          { inblock = 0; next }
                    inblock                   { print "replace " $0; next }
                    /^replace[[:space:]]/     { print }
                ' "$modfile" | { grep -Ev '=>[[:space:]]*(\.{1,2}/|/)' || true; }
            } >>go.mod &&
            # A tools-tagged import makes `go mod tidy` record every dependency of the command.
            printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$LIVEKIT_PKG" >tools.go &&
            go get "$LIVEKIT_MODULE@$LIVEKIT_VERSION" &&
            go mod tidy &&
            go build -trimpath -ldflags='-s -w' -o "$out_bin" "$LIVEKIT_PKG"
    ) >>"$log" 2>&1 || {
        explain_go_failure "$log"
        return 1
    }
}

ensure_livekit() {
    if [[ -x "$LIVEKIT_BIN" ]]; then
        log "livekit-server $LIVEKIT_VERSION cached: $LIVEKIT_BIN"
        return 0
    fi
    command -v go >/dev/null 2>&1 || die "go not found on PATH; needed to build livekit-server $LIVEKIT_VERSION"
    mkdir -p "$BIN_DIR"

    # Serialise concurrent builds (e.g. parallel test workers) on a lock file.
    exec 9>"$BIN_DIR/.livekit-build.lock"
    if command -v flock >/dev/null 2>&1; then
        flock 9
    fi
    if [[ -x "$LIVEKIT_BIN" ]]; then  # another process finished the build while we waited
        log "livekit-server $LIVEKIT_VERSION cached: $LIVEKIT_BIN"
        return 0
    fi

    local tmp_bin rc=0 start=$SECONDS
    BUILD_DIR="$(mktemp -d "$CACHE_DIR/build.XXXXXX")"
    trap 'rm -rf "$BUILD_DIR"' EXIT  # also on Ctrl-C: no half-built leftovers in the cache
    tmp_bin="$BUILD_DIR/livekit-server"
    log "building livekit-server $LIVEKIT_VERSION (first build: about 1.5 min on 2 cores)"
    if [[ "${VOXPLANE_FORCE_WRAPPER_BUILD:-0}" == 1 ]]; then
        rc=2  # test hook: exercise the fallback route
    else
        build_with_go_install "$BUILD_DIR" "$tmp_bin" || rc=$?
    fi
    if ((rc == 2)); then
        rc=0
        build_with_wrapper_module "$BUILD_DIR/wrapper" "$tmp_bin" || rc=1
    fi
    if ((rc != 0)) || [[ ! -x "$tmp_bin" ]]; then
        die "building livekit-server $LIVEKIT_VERSION failed: ${FAIL_REASON:-no binary produced}"
    fi
    # Same filesystem, so an atomic rename: a half-written binary is never seen as cached.
    mv -f "$tmp_bin" "$LIVEKIT_BIN"
    log "built $LIVEKIT_BIN in $((SECONDS - start))s"
}

ensure_redis
ensure_livekit

if ((print_path)); then
    printf '%s\n' "$LIVEKIT_BIN"
fi
