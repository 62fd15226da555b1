#!/usr/bin/env bash
# Make sure what the end-to-end call tests need exists:
#   * sipp (Debian package sip-tester) to place real SIP calls;
#   * the cgo libraries livekit-sip links (its build/sip/Dockerfile: pkg-config libopus-dev
#     libopusfile-dev libsoxr-dev);
#   * livekit-sip, built from the Go module proxy at a pinned release and cached as
#     $VOXPLANE_CACHE/bin/livekit-sip-<version> — or, when VOXPLANE_LIVEKIT_SIP_BIN is set, that
#     prebuilt binary instead.
#
# Idempotent: a second run does nothing but checks. Progress goes to stderr; stdout stays empty
# unless --print-path is given, in which case it is exactly the livekit-sip path.
#
# Environment:
#   VOXPLANE_CACHE                  cache root (default: $HOME/.cache/voxplane)
#   VOXPLANE_LIVEKIT_SIP_VERSION    livekit-sip release tag to build (default: pinned below)
#   VOXPLANE_LIVEKIT_SIP_BIN        use this livekit-sip binary; build nothing
set -euo pipefail

# Pinned release: the one whose config struct voxplane/desired/livekit_config.py was checked against.
# NOTE: on 2026-11-25 the Go module proxy reachable here served no version of github.com/livekit/sip
# (403 "This module version is not available"), nor the livekit/media-sdk and livekit/protocol
# pseudo-versions v1.11.0 requires; the build then fails with that one line.
readonly DEFAULT_SIP_VERSION="v1.11.0"
readonly SIP_MODULE="github.com/livekit/sip"
readonly SIP_PKG="${SIP_MODULE}/cmd/livekit-sip"
readonly APT_PACKAGES=(sip-tester pkg-config libopus-dev libopusfile-dev libsoxr-dev)

SIP_VERSION="${VOXPLANE_LIVEKIT_SIP_VERSION:-$DEFAULT_SIP_VERSION}"
CACHE_DIR="${VOXPLANE_CACHE:-$HOME/.cache/voxplane}"
BIN_DIR="$CACHE_DIR/bin"
SIP_BIN="$BIN_DIR/livekit-sip-$SIP_VERSION"

print_path=0

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

while (($#)); do
    case "$1" in
        --print-path) print_path=1 ;;
        -h | --help)
            echo "usage: $(basename "$0") [--print-path]  (installs sipp + codec libraries, builds livekit-sip $SIP_VERSION)" >&2
            exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
    shift
done

packages_present() {
    command -v sipp >/dev/null 2>&1 &&
        command -v pkg-config >/dev/null 2>&1 &&
        pkg-config --exists opus opusfile soxr
}

ensure_packages() {
    if packages_present; then
        log "sipp and codec libraries present: $(command -v sipp)"
        return 0
    fi
    apt_install_packages "${APT_PACKAGES[@]}"
    packages_present || die "sipp or codec libraries still missing after apt-get install"
    log "installed: $(command -v sipp), opus/opusfile/soxr development files"
}

ensure_sip_binary() {
    if [[ -n "${VOXPLANE_LIVEKIT_SIP_BIN:-}" ]]; then
        [[ -x "$VOXPLANE_LIVEKIT_SIP_BIN" ]] || die "VOXPLANE_LIVEKIT_SIP_BIN=$VOXPLANE_LIVEKIT_SIP_BIN is not an executable file"
        SIP_BIN="$VOXPLANE_LIVEKIT_SIP_BIN"
        log "livekit-sip given: $SIP_BIN"
        return 0
    fi
    # livekit-sip links libopus, libopusfile and libsoxr through cgo. In a subshell: its failure
    # (lib.sh dies) gets the way out added below instead of ending the script there.
    if ! (CGO_ENABLED=1 ensure_go_binary livekit-sip "$SIP_MODULE" "$SIP_PKG" "$SIP_VERSION" "$SIP_BIN" \
        "cgo; about 40 s with a warm Go module cache"); then
        die "no livekit-sip: build it from source (git clone https://github.com/livekit/sip; git checkout $SIP_VERSION;" \
            "go build -o livekit-sip ./cmd/livekit-sip) and run VOXPLANE_LIVEKIT_SIP_BIN=\$PWD/livekit-sip make e2e"
    fi
}

ensure_packages
ensure_sip_binary

if ((print_path)); then
    printf '%s\n' "$SIP_BIN"
fi
