"""`voxplane capacity`'s KV cache against vLLM's own accounting, for the same model and KV budget:
bytes per token, tokens per replica (vLLM's "KV cache size") and concurrent requests of
max_model_len (vLLM's "Maximum concurrency").

- Every example region's LLM, as declared and with each setting that changes the arithmetic (a
  float32 dtype, an fp8 KV cache, tensor parallelism, more GPUs than KV heads), through vLLM's
  config classes and its KV-cache code (vllm_kv.py: the model's config.json only, no weights),
  with the budget the planner estimates for it (plus a few bytes, so the block rounding shows).
- The tiny Llama served for real (the session's server, started as rendered): what it logged at
  start-up and exports in `vllm:cache_config_info`, for the KV budget it was given
  (VLLM_CPU_KVCACHE_SPACE) and the block size this CPU build picks.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from voxplane.plan import capacity
from voxplane.manifest.loader import load_project
from voxplane.manifest.model import Model, ModelProfile, Project

from tests.support.repo import REPO
from tests.support.vllm import KV_CACHE_GIB, TINY_PROFILE, VllmServer
from .conftest import HERE, REGIONS

pytestmark = pytest.mark.integration

CONFIGS: dict[str, dict[str, Any]] = yaml.safe_load((HERE / "model_configs.yaml").read_text())
GIB = 1024**3


@cache
def project() -> Project:
    return load_project(REPO)


def _variant(model: Model, **engine: Any) -> Model:
    gpus = engine.pop("gpus", model.gpus_per_replica)
    return dataclasses.replace(model, gpus_per_replica=gpus,
                               engine_args=dataclasses.replace(model.engine_args, **engine))


def _cases() -> list[tuple[str, Model, int]]:
    """(name, model, replica KV budget in bytes) of each example LLM and its variants."""
    out = []
    for region in REGIONS:
        for model in project().regions[region].models.values():
            if model.kind != "llm" or model.profile is None:
                continue
            [planned] = [m for m in capacity.plan(project(), region).models if m.model == model.name]
            assert planned.kv_budget_gib is not None
            heads = CONFIGS[model.model_id]["num_attention_heads"]
            variants = {"declared": model, "fp8 KV": _variant(model, kv_cache_dtype="fp8"), "TP 4": _variant(model, gpus=4)}
            if model.engine_args.quantization is None:  # quantized kernels take 16-bit activations only
                variants["float32"] = _variant(model, dtype="float32")
            if heads % 16 == 0:  # more GPUs than KV heads: vLLM replicates them
                variants["TP 16"] = _variant(model, gpus=16)
            for variant, m in variants.items():
                budget = int(planned.kv_budget_gib * GIB * m.gpus_per_replica / model.gpus_per_replica) + 12_345
                out.append((f"{region}/{model.name} {variant}", m, budget))
    return out


CASES = _cases()


@pytest.fixture(scope="module")
def vllm_answers(vllm_python: Path) -> dict[str, dict[str, Any]]:
    """vLLM's numbers for every case, from one run of vllm_kv.py."""
    payload = [{"config": CONFIGS[m.model_id], "dtype": m.engine_args.dtype, "kv_cache_dtype": m.engine_args.kv_cache_dtype,
                "tensor_parallel_size": m.gpus_per_replica, "max_model_len": m.engine_args.max_model_len,
                "quantization": m.engine_args.quantization, "block_size": capacity.KV_BLOCK_TOKENS,
                "budget": budget // m.gpus_per_replica} for _, m, budget in CASES]
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    done = subprocess.run([str(vllm_python), str(HERE / "vllm_kv.py")], input=json.dumps(payload), capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: a for (name, _, _), a in zip(CASES, answers, strict=True)}


@pytest.mark.parametrize("name,model,budget", CASES, ids=[c[0] for c in CASES])
def test_the_planners_kv_cache_is_vllms(name: str, model: Model, budget: int, vllm_answers: dict[str, dict[str, Any]]):
    got = vllm_answers[name]
    assert got["block_size"] == capacity.KV_BLOCK_TOKENS
    assert capacity.kv_heads_per_gpu(model) == got["kv_heads_per_gpu"]
    assert capacity.kv_bytes_per_token_per_gpu(model) == got["bytes_per_token"]
    assert capacity.kv_bytes_per_token(model) == got["bytes_per_token"] * model.gpus_per_replica
    assert capacity.kv_cache_tokens(model, budget) == got["tokens"]
    assert capacity.max_concurrency(model, budget) == pytest.approx(got["max_concurrency"], rel=1e-12)


def test_the_cases_cover_what_changes_the_arithmetic():
    """The variants differ where vLLM's arithmetic does: element size and heads per GPU."""
    sizes = {capacity.kv_dtype_bytes(m) for _, m, _ in CASES}
    assert sizes == {1, 2, 4}
    assert any(capacity.kv_heads_per_gpu(m) == 1 and m.profile and m.profile.kv_heads < m.gpus_per_replica
               for _, m, _ in CASES)


def test_the_planner_reads_the_tiny_model_as_the_running_vllm_does(vllm_server: VllmServer):
    """The server started as rendered, with a KV budget of VLLM_CPU_KVCACHE_SPACE GiB: the planner,
    told the tiny model's shape and the block size this build uses (it reports it), gets vLLM's
    logged "KV cache size" and "Maximum concurrency" and its exported block count."""
    log = vllm_server.log()
    logged = re.search(r"KV cache size: ([\d,]+) tokens", log)
    concurrency = re.search(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x", log)
    assert logged and concurrency, log[-3000:]
    [info] = [labels for name, labels, _ in vllm_server.metrics() if name == "vllm:cache_config_info"]
    block = int(info["block_size"])
    chat = project().regions["local"].models["chat"]
    tiny = dataclasses.replace(chat, profile=ModelProfile(**TINY_PROFILE))
    assert int(concurrency.group(1).replace(",", "")) == tiny.engine_args.max_model_len
    budget = KV_CACHE_GIB * GIB
    print(f"\nvLLM: {logged.group(1)} tokens, {info['num_gpu_blocks']} blocks of {block}, "
          f"{concurrency.group(2)}x at {concurrency.group(1)}; planner: {capacity.kv_cache_tokens(tiny, budget, block):,} tokens, "
          f"{capacity.kv_bytes_per_token(tiny)} B/token")
    assert capacity.kv_cache_tokens(tiny, budget, block) == int(logged.group(1).replace(",", ""))
    assert capacity.kv_cache_blocks(tiny, budget, block) == int(info["num_gpu_blocks"])
    assert capacity.max_concurrency(tiny, budget, block) == pytest.approx(float(concurrency.group(2)), abs=0.005)
    assert info["cache_dtype"] == "auto" and capacity.kv_dtype_bytes(tiny) == 2  # bfloat16 weights
