"""Every example region's rendered vLLM command goes through vLLM's own CLI parser, its serve
checks and its engine config classes, at the release the examples' image pins.

The exact rendered arguments go through the parser and the serve checks. For the engine config the
model becomes a folder holding that model's config.json (model_configs.yaml; the checks need no
weights, and nothing is downloaded here; --served-model-name keeps the id, so the name agents send
is checked as rendered), and what this CPU build cannot do is rewritten, each listed in
CPU_REWRITES.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from voxplane.manifest.servers import SERVERS

from tests.support.repo import REPO
from .conftest import HERE, REGIONS, rendered

# Real servers and the tools `make servers` builds (vLLM's venv, lkconfig, redis-server).
pytestmark = pytest.mark.integration

CONFIGS: dict[str, dict[str, Any]] = yaml.safe_load((HERE / "model_configs.yaml").read_text())
#: Rendered argument -> what the engine-config check runs instead on this CPU build, and why.
CPU_REWRITES = {
    # vllm/platforms/cpu.py: "Chunked-prefill and prefix-cache on the CPU backend is not
    # compatible with FP8 KV cache". The value itself passes the parser (its choices) unchanged.
    ("--kv-cache-dtype", "fp8"): ("--kv-cache-dtype", "auto"),
}
#: Quantization kernels vLLM swaps in for a method on this device (ModelConfig._verify_quantization).
DEVICE_KERNELS = {"awq": ("ipex",)}


def _llms() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for region in REGIONS:
        for obj in rendered(region):
            if obj["kind"] == "StatefulSet":
                container = obj["spec"]["template"]["spec"]["containers"][0]
                if container.get("command") == ["vllm", "serve"]:
                    out.append((f"{region}/{obj['metadata']['name']}", container))
    return out


LLMS = _llms()


def _check(python: Path, tmp: Path, args: list[str], *, parse_only: bool = False) -> subprocess.CompletedProcess[str]:
    """`vllm serve ARGS` through vLLM's CLI, stopped once the engine config is built (or, with
    parse_only, once the arguments are parsed and validated, the model id as rendered)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    if parse_only:
        command = ["--parse-only", "serve", *args]
    else:
        folder = tmp / "model"
        subprocess.run([str(python), str(HERE / "tiny_model.py"), "config", str(folder), json.dumps(CONFIGS[args[0]])],
                       check=True)
        command = ["serve", str(folder), *_cpu(args[1:])]
    return subprocess.run([str(python), str(HERE / "vllm_cli.py"), *command],
                          capture_output=True, text=True, env=env, timeout=300)


def _cpu(args: list[str]) -> list[str]:
    out = list(args)
    for i in range(len(out) - 1):
        if (out[i], out[i + 1]) in CPU_REWRITES:
            out[i], out[i + 1] = CPU_REWRITES[(out[i], out[i + 1])]
    return out


def test_every_example_region_runs_a_vllm():
    assert {name.split("/")[0] for name, _ in LLMS} == set(REGIONS)


def test_the_tests_run_the_release_the_examples_pin():
    """scripts/ensure-vllm-venv.sh installs the release of every example region's vLLM image."""
    installed = subprocess.run(["bash", str(REPO / "scripts/ensure-vllm-venv.sh"), "--print-version"],
                               capture_output=True, text=True, check=True).stdout.strip()
    for name, container in LLMS:
        tag = re.fullmatch(r"vllm/vllm-openai:(v[0-9.]+)(@sha256:[0-9a-f]{64})?", container["image"])
        assert tag is not None, f"{name}: {container['image']}"
        assert tag.group(1) == f"v{installed}" == SERVERS["vllm"].version, name


@pytest.mark.parametrize("name,container", LLMS, ids=[n for n, _ in LLMS])
def test_rendered_arguments_pass_vllms_own_checks(name, container, vllm_python, tmp_path):
    """Parsed, validated and turned into an engine config by vLLM itself; what the render meant
    (context length, quantization, port, served name, tool calling) is what vLLM configured."""
    args = container["args"]
    model_id = args[0]
    profile = next(m for m in yaml.safe_load((REPO / "regions" / f"{name.split('/')[0]}.yaml").read_text())["models"].values()
                   if m["model_id"] == model_id).get("profile")
    config = CONFIGS[model_id]
    if profile:  # the recorded config and the region's capacity profile describe one model
        heads_dim = config.get("head_dim", config["hidden_size"] // config["num_attention_heads"])
        assert (config["num_hidden_layers"], config["num_key_value_heads"], heads_dim) == (
            profile["layers"], profile["kv_heads"], profile["head_dim"])
    parsed = _check(vllm_python, tmp_path, args, parse_only=True)
    assert parsed.returncode == 0, parsed.stderr[-3000:]
    done = _check(vllm_python, tmp_path, args)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    flag = {a.split("=")[0]: (a.split("=", 1)[1] if "=" in a else args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else True)
            for i, a in enumerate(args) if a.startswith("--")}
    assert got["served_model_name"] == model_id
    assert got["port"] == int(flag["--port"])
    if "--max-model-len" in flag:
        assert got["max_model_len"] == int(flag["--max-model-len"])
    if "--quantization" in flag:
        # Accepted against the model's own quantization_config; the kernel is the device's choice
        # (this CPU build runs AWQ through IPEX, "ipex"; a GPU picks "awq_marlin").
        assert got["quantization"] in {flag["--quantization"], *DEVICE_KERNELS.get(flag["--quantization"], ())}
    if "--max-num-seqs" in flag:
        assert got["max_num_seqs"] == int(flag["--max-num-seqs"])
    assert got["enable_prefix_caching"] == ("--enable-prefix-caching" in flag)
    assert got["enable_auto_tool_choice"] == ("--enable-auto-tool-choice" in flag)


@pytest.mark.parametrize("bad,error", [
    (["--no-such-flag"], "unrecognized arguments"),
    (["--kv-cache-dtype", "fp9"], "invalid choice"),
    (["--gpu-memory-utilization", "1.5"], "GPU memory utilization must be less than 1.0"),
    (["--tool-call-parser=no-such-parser"], "invalid tool call parser"),
    (["--max-model-len", "999999999"], "max_model_len"),
])
def test_vllm_refuses_what_the_render_must_not_produce(bad, error, vllm_python, tmp_path):
    """The check can fail: a flag vLLM does not have, a value its config classes refuse, a tool
    parser it does not ship, a context longer than the model's."""
    _, container = LLMS[0]
    args = list(container["args"])
    if bad[0].startswith("--tool-call-parser"):
        args = [a for a in args if not a.startswith("--tool-call-parser")] + ["--enable-auto-tool-choice"]
    args += bad
    done = _check(vllm_python, tmp_path, args)
    assert done.returncode != 0
    assert error in done.stderr, done.stderr[-3000:]
