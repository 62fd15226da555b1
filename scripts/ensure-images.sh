#!/usr/bin/env bash
# Install the image tooling and prepare what the image tests build with (tests/images), once:
#   * Debian's docker.io (dockerd 20.10, containerd, runc, its docker client), docker-registry 2.8
#     and mmdebstrap (apt): ~20 s measured, up to a few minutes on a slow mirror. The packages' own services are kept from starting
#     (a system dockerd would add docker0 and iptables rules); voxplane runs its own engine on
#     loopback when a test or `voxplane dev images up` needs one (voxplane/dev/images.py).
#   * `voxplane dev images prepare`: the Python base stand-in (mmdebstrap, ~30-60 s, ~245 MB) and the
#     wheels every image of every region installs (the LLM router's too: ~190 MB, 1-3 min cold), both cached under
#     $VOXPLANE_CACHE/images keyed by their recipe and the requirements files.
# Starts nothing and leaves nothing running. Idempotent: a warm run takes a few seconds.
#
# usage: ensure-images.sh [--packages-only]
#   VOXPLANE_CACHE   cache root (default: $HOME/.cache/voxplane)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${VOXPLANE_CACHE:-$HOME/.cache/voxplane}"
VOX="$ROOT/.venv/bin/voxplane"

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

packages_only=0
case "${1:-}" in
    "") ;;
    --packages-only) packages_only=1 ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    *) die "unknown argument: $1" ;;
esac

# install_quietly PKG...: apt-get install with the packages' services kept from starting (a
# policy-rc.d that refuses every start, for the length of the install, where none exists).
install_quietly() {
    local policy=/usr/sbin/policy-rc.d placed=0
    if [[ ! -e "$policy" ]] && as_root test -w "$(dirname "$policy")"; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy" && placed=1
    fi
    local rc=0
    apt_install_packages "$@" || rc=$?
    if ((placed)); then
        as_root rm -f "$policy"
    fi
    # Where systemd runs, a unit enabled by the package would start at the next boot.
    if [[ -d /run/systemd/system ]]; then
        as_root systemctl disable --now docker.service docker.socket docker-registry.service >/dev/null 2>&1 || true
    fi
    return "$rc"
}

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
if ((${#missing[@]})); then
    start=$SECONDS
    log "installing ${missing[*]} (usually 20 s to a few minutes)"
    install_quietly "${missing[@]}"
    log "installed ${missing[*]} in $((SECONDS - start)) s"
else
    log "dockerd, docker-registry and mmdebstrap present"
fi
for tool in dockerd containerd runc docker-registry mmdebstrap; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool still not on PATH after apt-get install"
done

if ((packages_only)); then
    exit 0
fi
[[ -x "$VOX" ]] || die "$VOX not found: run \`make setup\` first"
mkdir -p "$CACHE_DIR"
VOXPLANE_CACHE="$CACHE_DIR" "$VOX" dev images prepare --root "$ROOT" >&2
