#!/usr/bin/env bash
# Build the Python environment the GPU preflight image installs (voxplane/gpu_preflight/
# requirements.txt, locked with its hash: `pip install --require-hashes --no-deps`, as the
# Dockerfile does), for tests/test_gpu_preflight_image.py, which runs the preflight package from a
# copy laid out as in the image with this venv's interpreter: nothing of the project's own .venv
# is importable there.
#
# The venv lives at $CACHE/gpu-preflight-venv-<hash>, the hash taken over the requirements file
# and the interpreter's version: an edited lock builds a new venv. A venv counts only once its
# stamp file is written; a half-built one (killed run) is rebuilt. First build: a few seconds
# (one 58 KB wheel).
#
# Idempotent. Progress goes to stderr; --print-path prints exactly the venv path on stdout.
#
# Environment:
#   VOXPLANE_CACHE                cache root (default: $HOME/.cache/voxplane)
#   VOXPLANE_GPU_PREFLIGHT_PYTHON interpreter to build with (default: python3; the image runs 3.11)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${VOXPLANE_CACHE:-$HOME/.cache/voxplane}"
PYTHON="${VOXPLANE_GPU_PREFLIGHT_PYTHON:-python3}"
REQ="$ROOT/voxplane/gpu_preflight/requirements.txt"

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
log() { printf 'ensure-gpu-preflight-venv: %s\n' "$*" >&2; }
die() { printf 'ensure-gpu-preflight-venv: error: %s\n' "$*" >&2; exit 1; }

print_path=false
case "${1:-}" in
    "") ;;
    --print-path) print_path=true ;;
    -h | --help) echo "usage: $(basename "$0") [--print-path]" >&2; exit 0 ;;
    *) die "unknown argument: $1" ;;
esac

[[ -f "$REQ" ]] || die "$REQ missing (the GPU preflight image's locked requirements)"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found on PATH (the preflight image runs Python 3.11)"
py_version="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
hash="$( { printf 'python %s\n' "$py_version"; cat "$REQ"; } | sha256sum | cut -c1-16)"
venv="$CACHE_DIR/gpu-preflight-venv-$hash"

install_locked() {
    "$1/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r "$REQ" >>"$2" 2>&1
}

if [[ -f "$venv/.voxplane-complete" ]]; then
    log "cached $venv"
else
    log "building $venv from voxplane/gpu_preflight/requirements.txt with Python $py_version (a few seconds)"
    ensure_pip_venv "$venv" "$PYTHON" "the GPU preflight image's locked requirements" install_locked
fi
if $print_path; then
    printf '%s\n' "$venv"
fi
