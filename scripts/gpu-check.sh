#!/usr/bin/env bash
# Hold `voxplane capacity` against a real GPU: for a machine with an NVIDIA GPU (nothing in `make
# test` runs it; no GPU is at hand where the suite runs).
#
#   1. NVML (through the GPU preflight's own reader, voxplane/gpu_preflight) says what GPU this is:
#      product, memory, MIG mode, driver and CUDA version. Without a GPU the script stops here with
#      the preflight's one line (NVMLError_LibraryNotFound: no driver) and exit 1, before it
#      installs anything.
#   2. The CUDA build of vLLM, the same release the example regions' image runs (the version
#      scripts/ensure-vllm-venv.sh pins for its CPU build), goes into its own venv, cached:
#      $VOXPLANE_CACHE/vllm-cuda-<version>-py<python> (about 9 GB; torch's CUDA wheels).
#   3. The tiny Llama of the tests (tests/upstream/tiny_model.py: 2 layers, 2 KV heads of 32) is
#      made offline and served on the GPU with --gpu-memory-utilization and --max-model-len as
#      given; the script waits for /health, reads from vLLM's log the KV cache memory it set aside
#      ("Available KV cache memory") and its size in tokens ("GPU KV cache size"), and from NVML the
#      memory in use while it serves; then it stops the server (only the process it started).
#   4. It prints those beside `voxplane capacity`'s plan for the same model, GPU memory (NVML's
#      total) and settings (voxplane.plan.capacity, the code behind the command), so a difference
#      between the planner and vLLM's own accounting shows as two numbers on one line.
#
# Usage: scripts/gpu-check.sh [--gpu-memory-utilization F] [--max-model-len N] [--dtype D] [--keep]
#   --gpu-memory-utilization  share of the GPU's memory vLLM may use (default 0.9, vLLM's own)
#   --max-model-len           context the KV cache is sized for (default 4096)
#   --dtype                   weights and KV cache dtype (default bfloat16; float16 on GPUs older than Ampere)
#   --keep                    keep the work folder (the model and vLLM's log) and say where it is
# Exit codes: 0 done, 1 no usable GPU or a step failed (one line saying which), 2 bad arguments.
#
# Environment:
#   VOXPLANE_CACHE        cache root (default: $HOME/.cache/voxplane)
#   VOXPLANE_VLLM_PYTHON  interpreter for the vLLM venv (default: python3)
#   CUDA_VISIBLE_DEVICES  which GPU vLLM and the NVML readings use (default: the first)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${VOXPLANE_CACHE:-$HOME/.cache/voxplane}"
PYTHON="${VOXPLANE_VLLM_PYTHON:-python3}"
PROJECT_PY="$ROOT/.venv/bin/python"
START_SECONDS=900

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
usage() { sed -n 's/^# \{0,1\}//; /^Usage:/,/^Exit codes:/p' "${BASH_SOURCE[0]}" >&2; }

utilization=0.9
max_model_len=4096
dtype=bfloat16
keep=false
while [[ $# -gt 0 ]]; do
    case "$1" in
        --gpu-memory-utilization) utilization="${2:?--gpu-memory-utilization needs a value}"; shift 2 ;;
        --max-model-len) max_model_len="${2:?--max-model-len needs a value}"; shift 2 ;;
        --dtype) dtype="${2:?--dtype needs a value}"; shift 2 ;;
        --keep) keep=true; shift ;;
        -h | --help) usage; exit 0 ;;
        *) printf 'gpu-check: error: unknown argument: %s\n' "$1" >&2; usage; exit 2 ;;
    esac
done
[[ "$utilization" =~ ^(0?\.[0-9]+|1(\.0*)?)$ ]] || { printf 'gpu-check: error: --gpu-memory-utilization must be in (0, 1], got %s\n' "$utilization" >&2; exit 2; }
[[ "$max_model_len" =~ ^[1-9][0-9]*$ ]] || { printf 'gpu-check: error: --max-model-len must be a positive integer, got %s\n' "$max_model_len" >&2; exit 2; }
[[ "$dtype" =~ ^(bfloat16|float16)$ ]] || { printf 'gpu-check: error: --dtype must be bfloat16 or float16, got %s\n' "$dtype" >&2; exit 2; }
[[ -x "$PROJECT_PY" ]] || die "$PROJECT_PY missing: run 'make setup' first (the NVML reader and the planner run from it)"

# --- 1. what NVML sees (nothing is installed before this answers) ---------------------------------
# One JSON line on stdout, or one line on stderr (what the GPU preflight would say) and exit 1.
nvml() {
    (cd "$ROOT" && "$PROJECT_PY" -) <<'PY'
import json, os, sys
from voxplane.gpu_preflight.check import HINTS
from voxplane.gpu_preflight.nvml import NvmlUnavailable, read
import pynvml

try:
    seen = read()
except NvmlUnavailable as e:
    hint = HINTS.get(e.error, "no NVIDIA GPU is visible here")
    print(f"gpu-check: no usable GPU ({e.error}: {e.reason}): {hint}; nothing installed or started", file=sys.stderr)
    sys.exit(1)
if not seen.gpus:
    print("gpu-check: no usable GPU (NVML sees none); nothing installed or started", file=sys.stderr)
    sys.exit(1)
index = int((os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0])
gpu = seen.gpus[index]
pynvml.nvmlInit()
try:
    used = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index)).used
finally:
    pynvml.nvmlShutdown()
print(json.dumps({"product": gpu.product, "memory_mib": gpu.memory_mib, "used_mib": used // 2**20, "mig": gpu.mig,
                  "driver": seen.driver, "cuda": seen.cuda}))
PY
}

gpu_json="$(nvml)" || exit 1
log "NVML: $gpu_json"

# --- 2. the CUDA build of vLLM, at the examples' release -------------------------------------------
vllm_version="$(bash "$ROOT/scripts/ensure-vllm-venv.sh" --print-version)"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found on PATH"
py_version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
venv="$CACHE_DIR/vllm-cuda-$vllm_version-py$py_version"
install_cuda_vllm() {
    local pip=("$1/bin/python" -m pip install --disable-pip-version-check --progress-bar off)
    # transformers below 5: vLLM 0.11 reads tokenizer attributes 5 removed (as in ensure-vllm-venv.sh).
    "${pip[@]}" "vllm==$vllm_version" "transformers<5" >>"$2" 2>&1 &&
        "$1/bin/python" -c 'import vllm.platforms as p; assert p.current_platform.is_cuda(), p.current_platform' >>"$2" 2>&1
}
if [[ ! -f "$venv/.voxplane-complete" ]]; then
    log "installing vllm $vllm_version (CUDA build) into $venv (about 9 GB)"
fi
ensure_pip_venv "$venv" "$PYTHON" "vllm $vllm_version (CUDA)" install_cuda_vllm

# --- 3. the tiny model, served on the GPU -----------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 60); do kill -0 "$server_pid" 2>/dev/null || break; sleep 1; done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    if $keep; then log "kept $work (model, vllm.log)"; else rm -rf "$work"; fi
}
trap cleanup EXIT

"$venv/bin/python" "$ROOT/tests/upstream/tiny_model.py" tiny "$work/model" >"$work/tiny.log" 2>&1 ||
    { tail -n 5 "$work/tiny.log" >&2; die "making the tiny model failed"; }
port="$("$PROJECT_PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log "starting vLLM $vllm_version on the GPU: --gpu-memory-utilization $utilization --max-model-len $max_model_len --dtype $dtype"
# PCI order: the GPU vLLM takes is the one NVML's index names.
CUDA_DEVICE_ORDER=PCI_BUS_ID HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 VLLM_HOST_IP=127.0.0.1 \
    "$venv/bin/python" -m vllm.entrypoints.openai.api_server --model "$work/model" --served-model-name tiny \
    --host 127.0.0.1 --port "$port" --dtype "$dtype" --gpu-memory-utilization "$utilization" \
    --max-model-len "$max_model_len" >"$work/vllm.log" 2>&1 &
server_pid=$!
deadline=$((SECONDS + START_SECONDS))
until curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        tail -n 15 "$work/vllm.log" >&2
        die "vLLM exited before it served (log above)"
    fi
    ((SECONDS < deadline)) || { tail -n 15 "$work/vllm.log" >&2; die "vLLM did not answer /health within ${START_SECONDS}s"; }
    sleep 2
done
serving_json="$(nvml)" || die "NVML could not be read while vLLM served"
log "vLLM serves; stopping it"
kill -TERM "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=""

# --- 4. vLLM's accounting and NVML's beside the planner's ------------------------------------------
(cd "$ROOT" && GPU_JSON="$gpu_json" SERVING_JSON="$serving_json" VLLM_LOG="$work/vllm.log" MODEL_DIR="$work/model" \
    UTILIZATION="$utilization" MAX_MODEL_LEN="$max_model_len" DTYPE="$dtype" VLLM_VERSION="$vllm_version" \
    "$PROJECT_PY" -) <<'PY'
import dataclasses, json, os, re, struct, sys
from pathlib import Path

from voxplane.plan.capacity import plan
from voxplane.manifest.loader import load_project
from voxplane.manifest.model import ModelProfile

GIB = 1024**3
gpu, serving = json.loads(os.environ["GPU_JSON"]), json.loads(os.environ["SERVING_JSON"])
text = Path(os.environ["VLLM_LOG"]).read_text(errors="replace")
kv_memory = re.search(r"Available KV cache memory: ([0-9.]+) GiB", text)
kv_tokens = re.search(r"GPU KV cache size: ([0-9,]+) tokens", text)
if not (kv_memory and kv_tokens):
    sys.exit("gpu-check: error: vLLM's log has no 'Available KV cache memory' or 'GPU KV cache size' line "
             f"(kept with --keep: {os.environ['VLLM_LOG']})")
vllm_kv_gib, vllm_tokens = float(kv_memory.group(1)), int(kv_tokens.group(1).replace(",", ""))

# The tiny model's exact parameter count, from its safetensors headers (8-byte length, then JSON).
params = 0
for f in Path(os.environ["MODEL_DIR"]).glob("*.safetensors"):
    with f.open("rb") as fh:
        header = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
    for name, tensor in header.items():
        if name != "__metadata__":
            count = 1
            for dim in tensor["shape"]:
                count *= dim
            params += count
config = json.loads((Path(os.environ["MODEL_DIR"]) / "config.json").read_text())
heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]

# voxplane capacity's plan for the same model and settings on this GPU (its memory as NVML says).
project = load_project(".")
region = project.regions["local"]
chat = region.models["chat"]
group = dataclasses.replace(region.gpu_node_groups[chat.node_group], gpu_product=gpu["product"],
                            gpu_memory_gib=gpu["memory_mib"] / 1024)
model = dataclasses.replace(
    chat, gpus_per_replica=1,
    profile=ModelProfile(params_billion=params / 1e9, layers=config["num_hidden_layers"], kv_heads=kv_heads,
                         head_dim=config["hidden_size"] // heads, weight_bits=16),
    engine_args=dataclasses.replace(chat.engine_args, gpu_memory_utilization=float(os.environ["UTILIZATION"]),
                                    max_model_len=int(os.environ["MAX_MODEL_LEN"]), max_num_seqs=None,
                                    kv_cache_dtype="auto", dtype=os.environ["DTYPE"]))
region = dataclasses.replace(region, gpu_node_groups={**region.gpu_node_groups, group.name: group},
                             models={"chat": model})
project = dataclasses.replace(project, regions={**project.regions, "local": region})
[planned] = [m for m in plan(project, "local").models if m.model == "chat"]

rows = [
    ("GPU", "-", f"{gpu['product']}, driver {gpu['driver']}, CUDA {gpu['cuda']}, MIG {'on' if gpu['mig'] else 'off'}",
     f"{gpu['product']} (as declared here)"),
    ("GPU memory", "-", f"{gpu['memory_mib'] / 1024:.2f} GiB", f"{planned.gpu_memory_gib:.2f} GiB"),
    ("memory in use while serving", "-", f"{serving['used_mib'] / 1024:.2f} GiB", "-"),
    ("KV cache memory", f"{vllm_kv_gib:.2f} GiB", "-", f"{planned.kv_budget_gib:.2f} GiB"),
    ("KV cache tokens", f"{vllm_tokens:,}", "-", f"{planned.kv_tokens:,}"),
    ("KV bytes per token", f"{vllm_kv_gib * GIB / vllm_tokens:,.0f} (memory / tokens)", "-",
     f"{planned.kv_bytes_per_token:,}"),
    ("streams at max_model_len", f"{vllm_tokens / int(os.environ['MAX_MODEL_LEN']):,.1f}", "-",
     f"{planned.streams_per_replica:,.1f}"),
]
print(f"vLLM {os.environ['VLLM_VERSION']} on the GPU, tiny Llama ({params:,} parameters, {os.environ['DTYPE']}), "
      f"--gpu-memory-utilization {os.environ['UTILIZATION']} --max-model-len {os.environ['MAX_MODEL_LEN']}")
header = ("", "vLLM (its log)", "NVML", "voxplane capacity (plan)")
widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
for r in [header, *rows]:
    print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
PY
