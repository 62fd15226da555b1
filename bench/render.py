"""Benchmark: render a region with 200 agents across 10 tenants and 4 models.

Runs the real program (validation, builders, components) under the SDK's mock engine and prints
resources registered, seconds, and the ratio against registering the same number of bare
`pulumi_kubernetes` resources with the same mocks in the same run (our overhead on top of the
SDK), best of --rounds runs each: the baseline registers the very objects the render produced, bare — typed classes, no
components, no validation, no builders. Also renders 50 and 100 agents to show how time grows. Target (issue #3): ratio <= 1.5x
and linear growth.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pulumi_kubernetes as k8s
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from voxplane.components._register import _TYPED, _snake_top_level  # noqa: E402
from voxplane.deploy.render import RenderResult, render, run_mocked  # noqa: E402

TENANTS = [f"tenant{i:02d}" for i in range(10)]


def make_repo(root: Path, agents: int) -> None:
    """A repository with one region `bench` (10 tenants, 4 models) and `agents` agent manifests."""
    region = yaml.safe_load((REPO / "regions/us-east.yaml").read_text())
    region["name"] = "bench"
    region["tenants"] = {t: {"quotas": {"cpu": "400", "memory": "800Gi", "pods": 500,
                                       "ephemeral_storage": "1Ti"}} for t in TENANTS}
    region["models"]["chat-small"] = dict(region["models"]["chat"], model_id="meta-llama/Llama-3.2-3B-Instruct", node_group="l4")
    region["models"]["chat-small"].pop("hf_token", None)
    region["models"]["chat"].pop("hf_token", None)
    (root / "regions").mkdir(parents=True)
    (root / "agents").mkdir()
    (root / "regions/bench.yaml").write_text(yaml.safe_dump(region, sort_keys=False))
    for i in range(agents):
        tenant = TENANTS[i % len(TENANTS)]
        manifest = {
            "name": f"agent-{i}",
            "tenant": tenant,
            "regions": ["bench"],
            "code": {"image": f"bench/agent-{i}:1.0.0"},
            "env": {"LOG_LEVEL": "info"},
            "secrets": {"CRM_TOKEN": {"secret": f"crm-{i}", "key": "token"}},
            "scaling": {"min_workers": 1, "max_workers": 10, "sessions_per_worker": 8},
            # Each agent its own room prefix: rooms of two tenants must never share one.
            "telephony": {"numbers": [f"+1312{i:07d}"], "dispatch": {"room_prefix": f"a{i:04d}"}},
            "inference": {"stt": {"model": "whisper"}, "tts": {"model": "kokoro"}, "llm": {"model": "chat" if i % 2 else "chat-small"}},
        }
        (root / f"agents/agent-{i}.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))


def time_render(agents: int) -> tuple[float, RenderResult]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_repo(root, agents)
        start = time.perf_counter()
        result = render("bench", root)
        elapsed = time.perf_counter() - start
    return elapsed, result


def time_bare(result: RenderResult) -> float:
    """The same objects registered bare (typed class per kind, no components, no validation, no
    builders) with the same mocks: the SDK's own cost for this payload. Docker images and LiveKit
    objects, which are not Kubernetes objects, count as one ConfigMap each carrying their inputs."""
    objects = list(result.kubernetes)
    for r in result.resources:
        if not r.type.startswith("kubernetes:"):
            data = {k: json.dumps(v) for k, v in r.inputs.items()}
            objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": r.name}, "data": data})

    def program() -> None:
        for i, obj in enumerate(objects):
            body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
            typed = _TYPED.get((obj["apiVersion"], obj["kind"]))
            name = f"bare-{i}"
            if typed is not None:
                typed(name, metadata=obj["metadata"], **_snake_top_level(body))
            else:
                k8s.apiextensions.CustomResource(name, api_version=obj["apiVersion"], kind=obj["kind"], metadata=obj["metadata"], **body)

    start = time.perf_counter()
    run_mocked(program, stack="bench", config={}, secret_keys=[])
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="best of N runs of each measurement")
    args = parser.parse_args()
    rows = []
    for agents in (args.agents // 4, args.agents // 2, args.agents):
        runs = [time_render(agents) for _ in range(args.rounds)]
        seconds, result = min(runs, key=lambda run: run[0])
        bare = min(time_bare(result) for _ in range(args.rounds))
        rows.append((agents, len(result.resources), seconds, bare))
    print(f"{'agents':>6}  {'resources':>9}  {'render s':>9}  {'bare s':>7}  {'ratio':>6}  {'s/agent':>8}")
    for agents, resources, seconds, bare in rows:
        print(f"{agents:>6}  {resources:>9}  {seconds:>9.2f}  {bare:>7.2f}  {seconds / bare:>5.2f}x  {seconds / agents:>8.4f}")
    first, last = rows[0], rows[-1]
    growth = (last[2] / first[2]) / (last[0] / first[0])
    print(f"growth {first[0]}→{last[0]} agents: time x{last[2] / first[2]:.2f} for agents x{last[0] / first[0]:.0f} "
          f"(1.00 = linear: {growth:.2f})")
    print(f"ratio at {last[0]} agents: {last[2] / last[3]:.2f}x (target <= 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
