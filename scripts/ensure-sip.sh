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

# Pinned release: the one whose config struct voxplane/build/livekit_config.py was checked against.
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
BUILD_DIR=""

log() { printf 'ensure-sip: %s\n' "$*" >&2; }
die() { printf 'ensure-sip: error: %s\n' "$*" >&2; exit 1; }

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

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        return 1
    fi
}

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
    command -v apt-get >/dev/null 2>&1 || die "sipp or codec libraries missing and apt-get not available; install: ${APT_PACKAGES[*]}"
    log "installing ${APT_PACKAGES[*]} with apt-get"
    local apt_log
    apt_log="$(mktemp)"
    apt_install() { as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${APT_PACKAGES[@]}"; }
    # The first try may fail only because package lists were never fetched: update once, retry.
    if ! apt_install >"$apt_log" 2>&1; then
        log "apt-get install failed; running apt-get update and retrying"
        if ! { as_root apt-get update -q && apt_install; } >>"$apt_log" 2>&1; then
            tail -n 5 "$apt_log" >&2
            rm -f "$apt_log"
            die "apt-get install ${APT_PACKAGES[*]} failed (needs root or passwordless sudo)"
        fi
    fi
    rm -f "$apt_log"
    packages_present || die "sipp or codec libraries still missing after apt-get install"
    log "installed: $(command -v sipp), opus/opusfile/soxr development files"
}

# One line saying why a go command failed (tail of its log goes to stderr first).
FAIL_REASON=""
explain_go_failure() {
    local log="$1" missing
    tail -n 8 "$log" >&2
    # The module proxy answers 403/404/410 for module versions it does not serve.
    missing="$(grep -m1 -oE '[^[:space:]]+@[^[:space:]:]+: reading [^[:space:]]+: (403|404|410)' "$log" | cut -d: -f1 || true)"
    # `go install` asks for the package path first; name the module instead.
    missing="${missing/#$SIP_PKG@/$SIP_MODULE@}"
    if [[ -n "$missing" ]]; then
        FAIL_REASON="module $missing is not available from the Go module proxy"
    else
        FAIL_REASON="$(grep -m1 -E '^(go: |# |.*\.go:[0-9]+)' "$log" || tail -n 1 "$log")"
    fi
}

# Route 1: `go install pkg@version`; returns 2 when Go refuses because of replace directives.
build_with_go_install() {
    local work="$1" out_bin="$2" log="$1/go-install.log"
    if GOBIN="$work" CGO_ENABLED=1 go install -trimpath -ldflags='-s -w' "$SIP_PKG@$SIP_VERSION" >"$log" 2>&1; then
        mv -f "$work/livekit-sip" "$out_bin"
        return 0
    fi
    if grep -q 'replace directives\|exclude directives' "$log"; then
        log "go install refused: $SIP_MODULE $SIP_VERSION has replace/exclude directives"
        return 2
    fi
    explain_go_failure "$log"
    return 1
}

# Route 2: a throwaway module that requires livekit-sip at the pinned version and copies its
# non-local replace directives, then `go build`s the command package.
build_with_wrapper_module() {
    local wrapdir="$1" out_bin="$2" log="$1/go-build.log" modfile
    log "building through a wrapper module in $wrapdir"
    mkdir -p "$wrapdir"
    modfile="$(go mod download -json "$SIP_MODULE@$SIP_VERSION" 2>"$log" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
    if [[ -z "$modfile" || ! -f "$modfile" ]]; then
        explain_go_failure "$log"
        return 1
    fi
    (
        cd "$wrapdir" &&
            go mod init voxplane.local/livekit-sip-wrapper &&
            {
                awk '
                    /^replace[[:space:]]*\($/ { inblock = 1; next }
                    inblock && /^\)/          { inblock = 0; next }
                    inblock                   { print "replace " $0; next }
                    /^replace[[:space:]]/     { print }
                ' "$modfile" | { grep -Ev '=>[[:space:]]*(\.{1,2}/|/)' || true; }
            } >>go.mod &&
            printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$SIP_PKG" >tools.go &&
            go get "$SIP_MODULE@$SIP_VERSION" &&
            go mod tidy &&
            CGO_ENABLED=1 go build -trimpath -ldflags='-s -w' -o "$out_bin" "$SIP_PKG"
    ) >>"$log" 2>&1 || {
        explain_go_failure "$log"
        return 1
    }
}

ensure_sip_binary() {
    if [[ -n "${VOXPLANE_LIVEKIT_SIP_BIN:-}" ]]; then
        [[ -x "$VOXPLANE_LIVEKIT_SIP_BIN" ]] || die "VOXPLANE_LIVEKIT_SIP_BIN=$VOXPLANE_LIVEKIT_SIP_BIN is not an executable file"
        SIP_BIN="$VOXPLANE_LIVEKIT_SIP_BIN"
        log "livekit-sip given: $SIP_BIN"
        return 0
    fi
    if [[ -x "$SIP_BIN" ]]; then
        log "livekit-sip $SIP_VERSION cached: $SIP_BIN"
        return 0
    fi
    command -v go >/dev/null 2>&1 || die "go not found on PATH; needed to build livekit-sip $SIP_VERSION"
    mkdir -p "$BIN_DIR"
    exec 9>"$BIN_DIR/.livekit-sip-build.lock"  # serialise concurrent builds
    if command -v flock >/dev/null 2>&1; then
        flock 9
    fi
    if [[ -x "$SIP_BIN" ]]; then
        log "livekit-sip $SIP_VERSION cached: $SIP_BIN"
        return 0
    fi

    local tmp_bin rc=0 start=$SECONDS
    BUILD_DIR="$(mktemp -d "$CACHE_DIR/build-sip.XXXXXX")"
    trap 'rm -rf "$BUILD_DIR"' EXIT
    tmp_bin="$BUILD_DIR/livekit-sip"
    log "building livekit-sip $SIP_VERSION (cgo; about 40 s with a warm Go module cache)"
    build_with_go_install "$BUILD_DIR" "$tmp_bin" || rc=$?
    if ((rc == 2)); then
        rc=0
        build_with_wrapper_module "$BUILD_DIR/wrapper" "$tmp_bin" || rc=1
    fi
    if ((rc != 0)) || [[ ! -x "$tmp_bin" ]]; then
        die "building livekit-sip $SIP_VERSION failed: ${FAIL_REASON:-no binary produced}"
    fi
    mv -f "$tmp_bin" "$SIP_BIN"  # atomic rename: a half-written binary is never seen as cached
    log "built $SIP_BIN in $((SECONDS - start))s"
}

ensure_packages
ensure_sip_binary

if ((print_path)); then
    printf '%s\n' "$SIP_BIN"
fi
