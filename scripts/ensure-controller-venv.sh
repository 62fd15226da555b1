#!/usr/bin/env bash
# Build the Python environment a platform controller's image installs
# (voxplane/controllers/NAME/requirements.txt, locked with hashes: `pip install --require-hashes
# --no-deps`, as its Dockerfile does), for the tests that run the controller package from a copy
# laid out as in the image with this venv's interpreter: nothing of the project's own .venv is
# importable there (tests/controllers/).
#
# The venv lives at $CACHE/controller-NAME-venv-<hash>, the hash taken over the requirements file
# and the interpreter's version: an edited lock builds a new venv. A venv counts only once its stamp
# file is written; a half-built one (killed run) is rebuilt. First build: ~20-40 s with a warm pip
# cache (kubernetes, pydantic-core, aiohttp, ~60 MB).
#
# Idempotent. Progress goes to stderr; --print-path prints exactly the venv path on stdout.
#
# Environment:
#   VOXPLANE_CACHE             cache root (default: $HOME/.cache/voxplane)
#   VOXPLANE_CONTROLLER_PYTHON interpreter to build with (default: python3; the image runs 3.11)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${VOXPLANE_CACHE:-$HOME/.cache/voxplane}"
PYTHON="${VOXPLANE_CONTROLLER_PYTHON:-python3}"

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
log() { printf 'ensure-controller-venv: %s\n' "$*" >&2; }
die() { printf 'ensure-controller-venv: error: %s\n' "$*" >&2; exit 1; }

usage() { echo "usage: $(basename "$0") NAME [--print-path]   (NAME: a folder of voxplane/controllers)" >&2; }

name="" print_path=false
while (($#)); do
    case "$1" in
        --print-path) print_path=true ;;
        -h | --help) usage; exit 0 ;;
        -*) usage; die "unknown argument: $1" ;;
        *) [[ -z "$name" ]] || { usage; die "one controller at a time"; }; name="$1" ;;
    esac
    shift
done
[[ -n "$name" ]] || { usage; die "which controller?"; }
[[ "$name" =~ ^[a-z0-9_]+$ ]] || die "no controller $name"
REQ="$ROOT/voxplane/controllers/$name/requirements.txt"
[[ -f "$REQ" ]] || die "$REQ missing (the controller image's locked requirements)"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found on PATH (the controller images run Python 3.11)"
py_version="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
hash="$( { printf 'python %s\n' "$py_version"; cat "$REQ"; } | sha256sum | cut -c1-16)"
venv="$CACHE_DIR/controller-$name-venv-$hash"

install_locked() {
    "$1/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r "$REQ" >>"$2" 2>&1
}

if [[ -f "$venv/.voxplane-complete" ]]; then
    log "cached $venv"
else
    log "building $venv from voxplane/controllers/$name/requirements.txt with Python $py_version (usually 20-40 s)"
    ensure_pip_venv "$venv" "$PYTHON" "the $name controller image's locked requirements" install_locked
fi
if $print_path; then
    printf '%s\n' "$venv"
fi
