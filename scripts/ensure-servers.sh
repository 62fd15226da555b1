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

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

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

ensure_redis() {
    if command -v redis-server >/dev/null 2>&1; then
        log "redis-server present: $(command -v redis-server)"
        return 0
    fi
    apt_install_packages redis-server
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

ensure_livekit() {
    ensure_go_binary livekit-server "$LIVEKIT_MODULE" "$LIVEKIT_PKG" "$LIVEKIT_VERSION" "$LIVEKIT_BIN" \
        "first build: about 1.5 min on 2 cores"
}

ensure_redis
ensure_livekit

if ((print_path)); then
    printf '%s\n' "$LIVEKIT_BIN"
fi
