"""vLLM's own checks of `vllm serve` arguments, stopped before the server starts; run by the vLLM
venv's interpreter (scripts/ensure-vllm-venv.sh):

    python vllm_cli.py [--parse-only] serve MODEL ARGS...

This is `vllm` (vllm.entrypoints.cli.main) with one change: what the `serve` command does once
vLLM has parsed and validated the arguments (ServeSubcommand.validate: validate_parsed_serve_args).
In its place it runs the checks run_server makes before it binds (validate_api_server_args: tool
and reasoning parsers) and builds the engine config as run_server does
(AsyncEngineArgs.from_cli_args(...).create_engine_config()), which holds every value against
vLLM's config classes; it prints what vLLM configured as JSON and exits 0, or fails as vLLM would.
No weights are loaded. --parse-only stops after the parser, validate_parsed_serve_args and
validate_api_server_args (no model folder needed).
"""

from __future__ import annotations

import json
import sys
from typing import Any


PARSE_ONLY = False


def _check(args: Any) -> None:
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.openai.api_server import validate_api_server_args
    from vllm.usage.usage_lib import UsageContext

    if getattr(args, "model_tag", None) is not None:  # as ServeSubcommand.cmd does
        args.model = args.model_tag
    validate_api_server_args(args)
    if PARSE_ONLY:
        print(json.dumps({"kv_cache_dtype": args.kv_cache_dtype, "port": args.port}))
        return
    config = AsyncEngineArgs.from_cli_args(args).create_engine_config(usage_context=UsageContext.OPENAI_API_SERVER)
    print(json.dumps({
        "model": config.model_config.model,
        "served_model_name": config.model_config.served_model_name,
        "max_model_len": config.model_config.max_model_len,
        "dtype": str(config.model_config.dtype),
        "quantization": config.model_config.quantization,
        "kv_cache_dtype": config.cache_config.cache_dtype,
        "enable_prefix_caching": config.cache_config.enable_prefix_caching,
        "gpu_memory_utilization": config.cache_config.gpu_memory_utilization,
        "max_num_seqs": config.scheduler_config.max_num_seqs,
        "tensor_parallel_size": config.parallel_config.tensor_parallel_size,
        "port": args.port,
        "enable_auto_tool_choice": args.enable_auto_tool_choice,
        "tool_call_parser": args.tool_call_parser,
    }))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--parse-only"]:
        PARSE_ONLY = True
        del sys.argv[1]
    import vllm.entrypoints.cli.serve as serve

    serve.ServeSubcommand.cmd = staticmethod(_check)  # type: ignore[method-assign]
    sys.argv[0] = "vllm"
    from vllm.entrypoints.cli.main import main

    main()
