#!/usr/bin/env bash
# Build the Python environments the example agent programs run in for the worker tests
# (tests/agents, tests/e2e, bench/dispatch.py): one virtualenv per distinct pair of the platform
# base image's requirements (agents/_platform/requirements.txt: livekit-agents and the plugins the
# glue uses) and an agent's own agents/<name>/requirements.txt, installed with pip from the package
# index in that order, exactly as the base image and then the agent's image install them, so the
# tests run the livekit-agents version the base pins, not whatever the project's own .venv holds.
# The glue itself (agents/_platform/voxplane_agent.py) is not installed: the tests put its folder
# on PYTHONPATH, as the base image does.
#
# Each venv lives at $CACHE/agents-venv-<hash>, the hash taken over both requirements files'
# content and the interpreter's version: an edited requirements file builds a new venv, an
# unchanged pair is reused, and agents with identical requirements share one. A venv is complete
# only once its stamp file is written; a half-built one (killed run) is removed and rebuilt.
# First build: ~30-60 s and ~500 MB per venv with a warm pip cache, a few minutes cold.
#
# Idempotent. Progress goes to stderr. --print-path DIR prints exactly the venv path for the
# agent folder DIR on stdout (building it if needed).
#
# Environment:
#   VOXPLANE_CACHE          cache root (default: $HOME/.cache/voxplane)
#   VOXPLANE_AGENTS_PYTHON  interpreter to build with (default: python3; the images use 3.11)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${VOXPLANE_CACHE:-$HOME/.cache/voxplane}"
PYTHON="${VOXPLANE_AGENTS_PYTHON:-python3}"
BASE_REQ="$ROOT/agents/_platform/requirements.txt"

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat >&2 <<USAGE
usage: $(basename "$0") [--print-path AGENT_DIR] [AGENT_DIR ...]
  Builds one venv per distinct requirements.txt of the agent folders (default: every
  agents/<name>/ with a requirements.txt), on top of agents/_platform/requirements.txt, under
  $CACHE_DIR/agents-venv-<hash> (cached).
  --print-path AGENT_DIR prints the venv path for AGENT_DIR on stdout.
USAGE
}

print_for=""
dirs=()
while (($#)); do
    case "$1" in
        --print-path) [[ $# -ge 2 ]] || die "--print-path needs an agent folder"; print_for="$2"; shift ;;
        -h | --help) usage; exit 0 ;;
        -*) usage; die "unknown argument: $1" ;;
        *) dirs+=("$1") ;;
    esac
    shift
done

[[ -f "$BASE_REQ" ]] || die "$BASE_REQ missing (the platform base image's requirements)"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found on PATH (the agent images run Python 3.11)"
py_version="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"

# venv_for DIR: the cache path of the venv for the base requirements plus DIR's requirements.txt.
venv_for() {
    local req="$1/requirements.txt" hash
    [[ -f "$req" ]] || die "$req missing"
    hash="$( { printf 'python %s\nbase\n' "$py_version"; cat "$BASE_REQ"; printf '\nagent\n'; cat "$req"; } \
        | sha256sum | cut -c1-16)"
    printf '%s/agents-venv-%s\n' "$CACHE_DIR" "$hash"
}

# install_layers VENV LOG: the base image's layer, then the agent's ($AGENT_REQ), as the images do.
install_layers() {
    local req
    for req in "$BASE_REQ" "$AGENT_REQ"; do
        "$1/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >>"$2" 2>&1 || return 1
    done
}

build() {
    local dir="$1" venv
    venv="$(venv_for "$dir")"
    if [[ -f "$venv/.voxplane-complete" ]]; then
        log "$(basename "$dir"): cached $venv"
        return 0
    fi
    log "$(basename "$dir"): building $venv from agents/_platform/requirements.txt + $dir/requirements.txt with Python $py_version"
    log "  (livekit-agents and its plugins, onnxruntime: ~500 MB; usually 30-60 s with a warm pip cache, a few minutes cold)"
    AGENT_REQ="$dir/requirements.txt"
    ensure_pip_venv "$venv" "$PYTHON" "$(basename "$dir")'s agent requirements" install_layers
    log "$(basename "$dir"): ready ($(grep -i '^livekit-agents==' "$venv/requirements.lock" || echo 'livekit-agents ?'))"
}

if ((${#dirs[@]} == 0)) && [[ -z "$print_for" ]]; then
    for req in "$ROOT"/agents/*/requirements.txt; do
        [[ "$req" == "$BASE_REQ" ]] && continue  # the base itself is not an agent
        dirs+=("$(dirname "$req")")
    done
fi
for d in "${dirs[@]}"; do
    build "$(cd "$d" && pwd)"
done
if [[ -n "$print_for" ]]; then
    d="$(cd "$print_for" && pwd)"
    build "$d"
    venv_for "$d"
fi
