#!/usr/bin/env bash
# Build the Python environment the gateway image installs (voxplane/gateway/requirements.txt,
# locked with hashes: `pip install --require-hashes --no-deps`, as the Dockerfile does), for
# tests/gateway/test_image_context.py, which runs the gateway package from a copy laid out as in
# the image with this venv's interpreter: nothing of the project's own .venv is importable there.
#
# The venv lives at $CACHE/gateway-venv-<hash>, the hash taken over the requirements file and the
# interpreter's version: an edited lock builds a new venv. A venv counts only once its stamp file
# is written; a half-built one (killed run) is rebuilt. First build: ~10-20 s with a warm pip
# cache (aiohttp, protobuf, ~40 MB).
#
# Idempotent. Progress goes to stderr; --print-path prints exactly the venv path on stdout.
#
# Environment:
#   VOXPLANE_CACHE          cache root (default: $HOME/.cache/voxplane)
#   VOXPLANE_GATEWAY_PYTHON interpreter to build with (default: python3; the image runs 3.11)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${VOXPLANE_CACHE:-$HOME/.cache/voxplane}"
PYTHON="${VOXPLANE_GATEWAY_PYTHON:-python3}"
REQ="$ROOT/voxplane/gateway/requirements.txt"

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
log() { printf 'ensure-gateway-venv: %s\n' "$*" >&2; }
die() { printf 'ensure-gateway-venv: error: %s\n' "$*" >&2; exit 1; }

print_path=false
case "${1:-}" in
    "") ;;
    --print-path) print_path=true ;;
    -h | --help) echo "usage: $(basename "$0") [--print-path]" >&2; exit 0 ;;
    *) die "unknown argument: $1" ;;
esac

[[ -f "$REQ" ]] || die "$REQ missing (the gateway image's locked requirements)"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found on PATH (the gateway image runs Python 3.11)"
py_version="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
hash="$( { printf 'python %s\n' "$py_version"; cat "$REQ"; } | sha256sum | cut -c1-16)"
venv="$CACHE_DIR/gateway-venv-$hash"

install_locked() {
    "$1/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r "$REQ" >>"$2" 2>&1
}

if [[ -f "$venv/.voxplane-complete" ]]; then
    log "cached $venv"
else
    log "building $venv from voxplane/gateway/requirements.txt with Python $py_version (usually 10-20 s)"
    ensure_pip_venv "$venv" "$PYTHON" "the gateway image's locked requirements" install_locked
fi
if $print_path; then
    printf '%s\n' "$venv"
fi
