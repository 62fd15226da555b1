"""vLLM's own KV-cache arithmetic for a model and a memory budget, without weights or a GPU; run by
the vLLM venv's interpreter (scripts/ensure-vllm-venv.sh):

    python vllm_kv.py < cases.json > answers.json

Each case: {"config": <config.json>, "dtype", "kv_cache_dtype", "tensor_parallel_size",
"max_model_len", "quantization" (or null), "block_size" (CUDA's default is 16; this CPU build
with IPEX would pick 128), "budget": bytes of KV memory per GPU}. For each, the
engine config vLLM builds from those arguments (EngineArgs(...).create_engine_config(), as
run_server does, on a folder holding only config.json), then the per-layer KV spec a GPU worker
reports for a decoder's attention layers (vllm/v1/worker/gpu_model_runner.py get_kv_cache_spec:
FullAttentionSpec with the model config's KV heads per GPU and head size, the KV dtype the runner
picks: the model's dtype for "auto", else STR_DTYPE_TO_TORCH_DTYPE), and what the engine core
does with a worker's available memory (vllm/v1/core/kv_cache_utils.py get_kv_cache_configs: the
blocks, and the "GPU KV cache size" and "Maximum concurrency" it logs).

Prints, per case: block_size, num_blocks, tokens (vLLM's "KV cache size"), max_concurrency,
bytes_per_token (page size over block size, all layers of one GPU), kv_heads_per_gpu, layers.

On this CPU build an fp8 KV cache is refused with chunked prefill (vllm/platforms/cpu.py), which
V1 always enables: the engine config is built with the KV cache dtype "auto", and the spec gets the
case's fp8 dtype as the runner would (STR_DTYPE_TO_TORCH_DTYPE). Nothing else reads the KV dtype.
The swap space (host memory for preempted requests, 4 GiB per GPU by default, checked against this
machine's RAM) is 0: it is not the GPU's KV cache.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any


def answer(case: dict[str, Any]) -> dict[str, Any]:
    from vllm.engine.arg_utils import EngineArgs
    from vllm.usage.usage_lib import UsageContext
    from vllm.utils import STR_DTYPE_TO_TORCH_DTYPE
    from vllm.v1.core.kv_cache_utils import get_kv_cache_configs, get_max_concurrency_for_kv_cache_config
    from vllm.v1.kv_cache_interface import FullAttentionSpec

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "config.json").write_text(json.dumps(case["config"]))
        args = EngineArgs(model=folder, skip_tokenizer_init=True, dtype=case["dtype"], kv_cache_dtype="auto",
                          tensor_parallel_size=case["tensor_parallel_size"], max_model_len=case["max_model_len"],
                          quantization=case.get("quantization"), block_size=case["block_size"],
                          swap_space=0)
        config = args.create_engine_config(usage_context=UsageContext.OPENAI_API_SERVER)
    model, cache, parallel = config.model_config, config.cache_config, config.parallel_config
    kv_dtype = case["kv_cache_dtype"]
    dtype = model.dtype if kv_dtype == "auto" else STR_DTYPE_TO_TORCH_DTYPE[kv_dtype]
    spec = FullAttentionSpec(block_size=cache.block_size, num_kv_heads=model.get_num_kv_heads(parallel),
                             head_size=model.get_head_size(), dtype=dtype)
    layers = model.get_num_layers(parallel)
    specs = {f"model.layers.{i}.self_attn.attn": spec for i in range(layers)}
    [kv] = get_kv_cache_configs(config, [specs], [int(case["budget"])])
    return {
        "block_size": cache.block_size,
        "num_blocks": kv.num_blocks,
        "tokens": kv.num_blocks * cache.block_size,
        "max_concurrency": get_max_concurrency_for_kv_cache_config(config, kv),
        "bytes_per_token": spec.page_size_bytes * layers // cache.block_size,
        "kv_heads_per_gpu": model.get_num_kv_heads(parallel),
        "layers": layers,
    }


if __name__ == "__main__":
    print(json.dumps([answer(c) for c in json.load(sys.stdin)]))
