"""Benchmark: `pulumi preview` and `pulumi up` of a 200-agent region through the real engine.

The region of bench/render.py (10 tenants, 4 models, N agents with telephony) is deployed by the
real Pulumi CLI, language host and Kubernetes provider to a local control plane of its own (etcd,
kube-apiserver, controller-manager, scheduler, kwok nodes derived from the region) and a dev
livekit-server. The baseline, measured in the same run through the same engine and cluster, is a
bare Pulumi program registering the very objects the render produced — typed pulumi_kubernetes
classes, no components, no validation, no builders; LiveKit objects count as one ConfigMap each
carrying their inputs. Both sides preview their empty stacks first; then each side in turn is
brought up on a fresh control plane and dev LiveKit server of its own (they declare the same object
names, so they cannot both be up on one cluster); `--destroy` also times each side's destroy.
Prints wall seconds and CPU seconds (user + system of the engine, the language host, the program and
the provider plugins: every process `pulumi` started and waited for) and their ratios (target,
issue #7: <= 1.2x). CPU time is the steadier number on a shared machine; wall time is what a user waits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from render import make_repo  # noqa: E402  (bench/render.py)
from tests.support.servers import livekit_with_redis  # noqa: E402

BARE_PROGRAM = '''\
import json
from pathlib import Path
from typing import Iterator

import pulumi_kubernetes as k8s
from voxplane.components._register import _TYPED, _snake_top_level

import pulumi

provider = k8s.Provider("bare-k8s", context="voxplane-local")
objects = json.loads(Path("objects.json").read_text())
# Namespaces first; everything else after them (as any program must order it).
namespaces = [k8s.core.v1.Namespace(f"bare-ns-{o['metadata']['name']}", metadata=o["metadata"],
                                    opts=pulumi.ResourceOptions(provider=provider))
              for o in objects if o["kind"] == "Namespace"]
opts = pulumi.ResourceOptions(provider=provider, depends_on=namespaces)
for i, obj in enumerate(o for o in objects if o["kind"] != "Namespace"):
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    typed = _TYPED.get((obj["apiVersion"], obj["kind"]))
    if typed is not None:
        typed(f"bare-{i}", metadata=obj["metadata"], opts=opts, **_snake_top_level(body))
    else:
        k8s.apiextensions.CustomResource(f"bare-{i}", api_version=obj["apiVersion"], kind=obj["kind"],
                                         metadata=obj["metadata"], opts=opts, **body)
'''


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(label: str, stack, *args: str) -> tuple[float, float]:
    """(wall s, CPU s) of one pulumi command; the CPU time covers every process it waited for."""
    print(f"{label}: {args[0]} ...", file=sys.stderr, flush=True)
    cpu, start = _children_cpu(), time.perf_counter()
    proc = stack.pulumi(*args, capture=True, timeout=3600)
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"pulumi {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    print(f"{label}: {args[0]} {wall:.1f} s wall, {cpu:.1f} s CPU", file=sys.stderr, flush=True)
    return wall, cpu


def bare_objects(result) -> list[dict]:
    objects = []
    for obj in result.kubernetes:
        if obj["kind"] == "Secret":  # render redacts values; give the bare side real (dummy) ones
            obj = dict(obj, stringData={k: "bench" for k in (obj.get("data") or obj.get("stringData") or {})})
            obj.pop("data", None)
        objects.append(obj)
    for i, lk in enumerate(result.livekit):
        objects.append({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": f"livekit-{i}", "namespace": "default"},
                        "data": {k: json.dumps(v) for k, v in lk.items()}})
    return objects


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--destroy", action="store_true", help="also time pulumi destroy of each side")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="voxplane-bench-engine-") as tmp:
        work = Path(tmp)
        os.environ["VOXPLANE_DEV_STATE"] = str(work / "dev")  # a cluster of its own
        from voxplane.dev import cluster
        from voxplane.dev.stack import prepare
        from voxplane.manifest.loader import load
        from voxplane.deploy.render import render

        root = work / "repo"
        make_repo(root, args.agents)
        for name in ("Pulumi.yaml", "stacks/__main__.py"):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO / name, root / name)
        os.symlink(REPO / ".venv", root / ".venv")
        os.symlink("../.venv", root / "stacks" / ".venv")
        (root / "Pulumi.bench.yaml").write_text(yaml.safe_dump({"config": {
            "voxplane:region": "bench", "voxplane:kubeContext": cluster.CONTEXT, "voxplane:buildImages": False}}))
        project = load((), root).require_project()
        result = render("bench", root)
        print(f"region bench: {args.agents} agents, {len(result.resources)} resources "
              f"({len(result.kubernetes)} Kubernetes, {len(result.livekit)} LiveKit)", file=sys.stderr)

        @contextlib.contextmanager
        def servers() -> Iterator[dict[str, str]]:
            """A control plane with the region's nodes and a dev livekit-server, torn down after."""
            cluster.up(project.regions["bench"], project.agents_in("bench"), lambda line: print(f"  {line}", file=sys.stderr))
            try:
                with livekit_with_redis(region="bench", root=root) as lk:
                    yield {"KUBECONFIG": str(cluster.kubeconfig_path()), "LIVEKIT_URL": lk.url}
            finally:
                cluster.down(lambda _line: None, quiet=True, purge=True)  # the next side starts from an empty etcd

        phases = ("preview", "up") + (("destroy",) if args.destroy else ())
        rows: dict[str, dict[str, tuple[float, float]]] = {"voxplane": {}, "bare": {}}
        state_sizes: dict[str, tuple[int, int]] = {}
        with servers() as env:
            ours = prepare(root, "bench", state_dir=work / "state", extra_env=env)
            bare_root = work / "bare"
            bare_root.mkdir()
            (bare_root / "Pulumi.yaml").write_text("name: bare\nruntime: python\n")
            (bare_root / "__main__.py").write_text(BARE_PROGRAM)
            (bare_root / "objects.json").write_text(json.dumps(bare_objects(result)))
            (bare_root / "Pulumi.bench.yaml").write_text("config: {}\n")
            bare = prepare_bare(bare_root, work / "state-bare", ours.env)
            sides = {"voxplane": ours, "bare": bare}
            for label, stack in sides.items():
                rows[label]["preview"] = timed(label, stack, "preview")
            rows["voxplane"]["up"] = timed("voxplane", ours, "up", "--yes", "--skip-preview")
            state_sizes["voxplane"] = checkpoint_size(work / "state")
            if args.destroy:
                rows["voxplane"]["destroy"] = timed("voxplane", ours, "destroy", "--yes", "--skip-preview")
        with servers() as env:
            bare.env.update(env)
            rows["bare"]["up"] = timed("bare", bare, "up", "--yes", "--skip-preview")
            state_sizes["bare"] = checkpoint_size(work / "state-bare")
            if args.destroy:
                rows["bare"]["destroy"] = timed("bare", bare, "destroy", "--yes", "--skip-preview")

    print(f"{'':10}" + "".join(f"  {p + ' wall s':>16}  {p + ' CPU s':>15}" for p in phases))
    for label, row in rows.items():
        print(f"{label:10}" + "".join(f"  {row[p][0]:>16.1f}  {row[p][1]:>15.1f}" for p in phases))
    # The file backend rewrites the whole checkpoint after every step, so its size times the
    # number of steps is engine work that grows with the square of the stack.
    for label, (count, size) in state_sizes.items():
        print(f"{label:10}  state after up: {count} resources, checkpoint {size / 1e6:.1f} MB")
    for i, kind in enumerate(("wall", "CPU")):
        ratios = ", ".join(f"{p} {rows['voxplane'][p][i] / rows['bare'][p][i]:.2f}x" for p in phases)
        print(f"ratio voxplane/bare ({kind}): {ratios} (target <= 1.2x for preview and up)")
    return 0


def checkpoint_size(state: Path) -> tuple[int, int]:
    """(resources, bytes) of the one stack checkpoint under a file backend folder."""
    (path,) = [p for p in (state / ".pulumi" / "stacks").rglob("*.json")]
    doc = json.loads(path.read_text())
    return len(doc["checkpoint"]["latest"]["resources"]), path.stat().st_size


def prepare_bare(root: Path, state: Path, env: dict[str, str]):
    """The bare project's stack: same engine env, its own file backend, no secrets."""
    from voxplane.dev.stack import StackEnv

    state.mkdir(parents=True)
    env = dict(env, PULUMI_BACKEND_URL=f"file://{state}", PYTHONPATH=str(REPO))
    subprocess.run(["pulumi", "stack", "init", "bench", "--non-interactive"], cwd=root, env=env, check=True,
                   capture_output=True)
    return StackEnv("bench", root, root / "Pulumi.bench.yaml", env)


if __name__ == "__main__":
    sys.exit(main())
