#!/usr/bin/env bash
# Build the Python environment the LLM router image installs (voxplane/llm_router/requirements.txt:
# vllm-router, the vLLM project's router, and what it requires, locked with hashes: `pip install
# --require-hashes --no-deps`, as the Dockerfile does), for the tests and the routing benchmark,
# which run that router in front of real vLLM servers (tests/support/llm_router.py,
# bench/llm_routing.py).
#
# The venv lives at $CACHE/router-venv-<hash>, the hash taken over the requirements file and the
# interpreter's version: an edited lock builds a new venv. A venv counts only once its stamp file
# is written; a half-built one (killed run) is rebuilt. First build: ~15-30 s with a warm pip
# cache (the router's wheel is 24 MB).
#
# Idempotent. Progress goes to stderr; --print-path prints exactly the venv path on stdout.
#
# Environment:
#   VOXPLANE_CACHE          cache root (default: $HOME/.cache/voxplane)
#   VOXPLANE_ROUTER_PYTHON  interpreter to build with (default: python3; the image runs 3.11)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${VOXPLANE_CACHE:-$HOME/.cache/voxplane}"
PYTHON="${VOXPLANE_ROUTER_PYTHON:-python3}"
REQ="$ROOT/voxplane/llm_router/requirements.txt"

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
log() { printf 'ensure-router-venv: %s\n' "$*" >&2; }
die() { printf 'ensure-router-venv: error: %s\n' "$*" >&2; exit 1; }

print_path=false
case "${1:-}" in
    "") ;;
    --print-path) print_path=true ;;
    -h | --help) echo "usage: $(basename "$0") [--print-path]" >&2; exit 0 ;;
    *) die "unknown argument: $1" ;;
esac

[[ -f "$REQ" ]] || die "$REQ missing (the router image's locked requirements)"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found on PATH (the router image runs Python 3.11)"
py_version="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
hash="$( { printf 'python %s\n' "$py_version"; cat "$REQ"; } | sha256sum | cut -c1-16)"
venv="$CACHE_DIR/router-venv-$hash"

install_locked() {
    "$1/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r "$REQ" >>"$2" 2>&1
}

if [[ -f "$venv/.voxplane-complete" ]]; then
    log "cached $venv"
else
    log "building $venv from voxplane/llm_router/requirements.txt with Python $py_version (usually 15-30 s)"
    ensure_pip_venv "$venv" "$PYTHON" "the router image's locked requirements" install_locked
fi
if $print_path; then
    printf '%s\n' "$venv"
fi
