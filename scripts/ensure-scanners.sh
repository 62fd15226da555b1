#!/usr/bin/env bash
# Install, once and at pinned versions, the two Kubernetes policy scanners the tests run on every
# example region's render (tests/test_policy_scanners.py, voxplane/devtools/scan.py):
#   checkov     from PyPI, into its OWN virtualenv $CACHE/checkov-<version>-py<X.Y> (its large
#               dependency tree never touches the project's .venv); complete once its stamp file
#               is written, a half-built one (killed run) is removed and rebuilt.
#               Cold: ~300 MB, 1-3 min (mostly downloads); ~3 min measured with a cold pip cache.
#   kube-score  from the Go module proxy (`go install github.com/zegl/kube-score/cmd/kube-score@v…`,
#               through a wrapper module if replace directives block it) into
#               $CACHE/bin/kube-score-<version>. Cold: ~1-2 min on 2 cores.
# Each is version-checked after install and on every run (checkov --version, the module version
# Go embeds in kube-score). Concurrent runs wait on one lock per tool.
#
# Idempotent. Progress goes to stderr. --print-paths prints exactly two lines on stdout:
#   checkov=/path/to/checkov
#   kube-score=/path/to/kube-score
#
# usage: ensure-scanners.sh [checkov|kube-score|all] [--print-paths]
#   VOXPLANE_CACHE            cache root (default: $HOME/.cache/voxplane)
#   VOXPLANE_SCANNERS_PYTHON  interpreter checkov's venv is built with (default: python3)
set -euo pipefail

# Pins. Bumping either changes findings: re-run the test and update policy/scanner-exceptions.yaml.
readonly CHECKOV_VERSION="3.3.30"
readonly KUBE_SCORE_VERSION="v1.20.0"
readonly KUBE_SCORE_MODULE="github.com/zegl/kube-score"
readonly KUBE_SCORE_PKG="$KUBE_SCORE_MODULE/cmd/kube-score"

CACHE_DIR="${VOXPLANE_CACHE:-$HOME/.cache/voxplane}"
BIN_DIR="$CACHE_DIR/bin"
PYTHON="${VOXPLANE_SCANNERS_PYTHON:-python3}"

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

what="all"
print_paths=0
while (($#)); do
    case "$1" in
        checkov | kube-score | all) what="$1" ;;
        --print-paths) print_paths=1 ;;
        -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
        *) die "unknown argument: $1 (checkov, kube-score, all, --print-paths)" ;;
    esac
    shift
done

mkdir -p "$CACHE_DIR" "$BIN_DIR"
export GOTOOLCHAIN=local

CHECKOV_BIN=""
KUBE_SCORE_BIN="$BIN_DIR/kube-score-$KUBE_SCORE_VERSION"

# ---------------------------------------------------------------------------------------------
# checkov: pip into a venv of its own, keyed by checkov's version and the interpreter's.
# After the install: `checkov --version` (~5 s: it imports everything). On later runs: the
# installed distribution's metadata names the pinned version (instant), and the entry point exists.
# shellcheck disable=SC2329  # called by install_checkov, which ensure_pip_venv calls
verify_checkov() {
    local venv="$1" out
    out="$("$CHECKOV_BIN" --version 2>/dev/null)" || die "$CHECKOV_BIN --version failed (delete $venv to rebuild)"
    [[ "$out" == "$CHECKOV_VERSION" ]] || die "$CHECKOV_BIN reports '$out', not $CHECKOV_VERSION (delete $venv to rebuild)"
}
verify_checkov_metadata() {
    local venv="$1" meta
    meta="$(compgen -G "$venv/lib/python*/site-packages/checkov-$CHECKOV_VERSION.dist-info/METADATA" | head -n 1)" ||
        die "$venv holds no checkov $CHECKOV_VERSION distribution (delete it to rebuild)"
    grep -qx "Version: $CHECKOV_VERSION" "$meta" || die "$meta does not say Version: $CHECKOV_VERSION (delete $venv to rebuild)"
    [[ -x "$CHECKOV_BIN" ]] || die "$CHECKOV_BIN missing (delete $venv to rebuild)"
}

# shellcheck disable=SC2329  # called by ensure_pip_venv
install_checkov() {  # VENV LOG
    "$1/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION" >>"$2" 2>&1 &&
        verify_checkov "$1"
}

ensure_checkov() {
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found on PATH (checkov needs Python 3.9-3.12)"
    local py venv
    py="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    venv="$CACHE_DIR/checkov-$CHECKOV_VERSION-py$py"
    CHECKOV_BIN="$venv/bin/checkov"
    if [[ ! -f "$venv/.voxplane-complete" ]]; then
        log "installing checkov $CHECKOV_VERSION from PyPI into $venv (its own venv; ~300 MB; 1-3 min, most of it downloads)"
    fi
    ensure_pip_venv "$venv" "$PYTHON" "checkov $CHECKOV_VERSION" install_checkov
    verify_checkov_metadata "$venv"
    log "checkov $CHECKOV_VERSION ready: $CHECKOV_BIN"
}

# ---------------------------------------------------------------------------------------------
# kube-score: the Go module proxy, version in the binary's name, and the module version Go embeds.
ensure_kube_score() {
    ensure_go_binary kube-score "$KUBE_SCORE_MODULE" "$KUBE_SCORE_PKG" "$KUBE_SCORE_VERSION" "$KUBE_SCORE_BIN" \
        "first build: ~1-2 min on 2 cores"
    command -v go >/dev/null 2>&1 || die "go not found on PATH; needed to verify kube-score's version"
    go version -m "$KUBE_SCORE_BIN" 2>/dev/null |
        awk -v m="$KUBE_SCORE_MODULE" -v v="$KUBE_SCORE_VERSION" '($1 == "mod" || $1 == "dep") && $2 == m && $3 == v { ok = 1 } END { exit !ok }' ||
        die "$KUBE_SCORE_BIN does not embed $KUBE_SCORE_MODULE $KUBE_SCORE_VERSION (stale or foreign binary; delete it to rebuild)"
    log "kube-score $KUBE_SCORE_VERSION ready: $KUBE_SCORE_BIN"
}

case "$what" in
    checkov) ensure_checkov ;;
    kube-score) ensure_kube_score ;;
    all) ensure_checkov; ensure_kube_score ;;
esac

if ((print_paths)); then
    [[ -n "$CHECKOV_BIN" ]] && printf 'checkov=%s\n' "$CHECKOV_BIN"
    [[ "$what" != checkov ]] && printf 'kube-score=%s\n' "$KUBE_SCORE_BIN"
fi
exit 0
