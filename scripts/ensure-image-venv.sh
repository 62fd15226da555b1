#!/usr/bin/env bash
# Build the Python environment an image of this repository installs: CONTEXT/requirements.txt,
# locked with hashes (`pip install --require-hashes --no-deps`, as CONTEXT/Dockerfile does), for the
# tests that run the image's package from a copy laid out as in the image with this venv's
# interpreter, where nothing of the project's own .venv is importable. CONTEXT is the image's build
# context: voxplane/gateway, voxplane/llm_router, voxplane/gpu_preflight, voxplane/controllers/NAME.
#
# The venv lives at $CACHE/image-venv-<context>-<hash>, the hash taken over the requirements file and
# the interpreter's version: an edited lock builds a new venv. A venv counts only once its stamp file
# is written; a half-built one (killed run) is rebuilt. First build: a few seconds to ~40 s with a
# warm pip cache (the controllers' kubernetes client is the largest).
#
# Idempotent. Progress goes to stderr; --print-path prints exactly the venv path on stdout.
#
# Environment:
#   VOXPLANE_CACHE        cache root (default: $HOME/.cache/voxplane)
#   VOXPLANE_IMAGE_PYTHON interpreter to build with (default: python3; the images run 3.11)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${VOXPLANE_CACHE:-$HOME/.cache/voxplane}"
PYTHON="${VOXPLANE_IMAGE_PYTHON:-python3}"

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { echo "usage: $(basename "$0") CONTEXT [--print-path]   (CONTEXT: an image's build folder, e.g. voxplane/gateway)" >&2; }

context="" print_path=false
while (($#)); do
    case "$1" in
        --print-path) print_path=true ;;
        -h | --help) usage; exit 0 ;;
        -*) usage; die "unknown argument: $1" ;;
        *) [[ -z "$context" ]] || { usage; die "one image at a time"; }; context="${1%/}" ;;
    esac
    shift
done
[[ -n "$context" ]] || { usage; die "which image?"; }
[[ "$context" =~ ^voxplane(/[a-z0-9_]+)+$ ]] || die "no image build context $context"
REQ="$ROOT/$context/requirements.txt"
[[ -f "$REQ" && -f "$ROOT/$context/Dockerfile" ]] || die "$context has no Dockerfile and requirements.txt (an image's build context)"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found on PATH (the images run Python 3.11)"
py_version="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
hash="$( { printf 'python %s\n' "$py_version"; cat "$REQ"; } | sha256sum | cut -c1-16)"
slug="${context#voxplane/}"
venv="$CACHE_DIR/image-venv-${slug//\//-}-$hash"

install_locked() {
    "$1/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r "$REQ" >>"$2" 2>&1
}

if [[ -f "$venv/.voxplane-complete" ]]; then
    log "cached $venv"
else
    log "building $venv from $context/requirements.txt with Python $py_version (seconds to ~40 s)"
    ensure_pip_venv "$venv" "$PYTHON" "the locked requirements of $context's image" install_locked
fi
if $print_path; then
    printf '%s\n' "$venv"
fi
