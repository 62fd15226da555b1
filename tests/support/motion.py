"""The `local` region in motion, for the tests and the benchmark that need the whole loop: the dev
cluster with its autoscaling stack and its pod runner (agent pods as real workers), a dev
livekit-server + Redis with the region's config, the region's gateway in front of it (the address
agents dial), the region's objects applied as `pulumi up` applies them (server-side apply as
`pulumi-kubernetes`, Secrets with the dev values `voxplane dev pulumi` gives them), and its SIP
trunks and dispatch rules synced onto the server (`voxplane livekit sync`).

Everything runs in its own dev state folder (VOXPLANE_DEV_STATE, set while it runs) from a copy
of the manifests the caller may edit first (a smaller pool for 2 cores), and is stopped afterwards.
Nothing skips: what cannot start fails with its reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from voxplane.dev import cluster, standins
from voxplane.dev.gateway import GatewayServer
from voxplane.dev.region import region_gateway
from voxplane.dev.stack import dev_secrets, needed_secret_keys
from voxplane.drift.kubernetes.secrets import env_lookup, resolved_string_data
from voxplane.livekit.reconcile import sync
from voxplane.livekit.secrets import SecretRef, StaticSecrets
from voxplane.manifest.loader import load
from voxplane.deploy.render import render

from .repo import copy_manifests, use_free_prometheus_port
from .servers import DevLiveKit, livekit_with_redis

__all__ = ["Motion", "call_run", "condition", "motion", "motion_with_stand_in_models", "only_agents", "set_scaling"]

REGION = "local"
FIELD_MANAGER = "pulumi-kubernetes"


def only_agents(root: Path, keep: set[str], region: str = REGION) -> None:
    """Take every agent but `keep` out of `region` (fewer workers on a small machine)."""
    for manifest in sorted((root / "agents").glob("*.yaml")):
        if manifest.stem in keep:
            continue
        text = manifest.read_text()
        new = re.sub(r"(?m)^regions: \[(.*)\]$", lambda m: "regions: [" + ", ".join(
            r.strip() for r in m.group(1).split(",") if r.strip() != region) + "]", text)
        manifest.write_text(new)


def set_scaling(root: Path, agent: str, **fields: Any) -> None:
    """Set `scaling.<field>` of agents/<agent>.yaml (each present or added under `scaling:`)."""
    manifest = root / "agents" / f"{agent}.yaml"
    text = manifest.read_text()
    for key, value in fields.items():
        text, count = re.subn(rf"(?m)^(  {key}: ).*$", rf"\g<1>{value}", text)
        if count == 0:
            text = text.replace("\nscaling:\n", f"\nscaling:\n  {key}: {value}\n", 1)
    manifest.write_text(text)


def condition(pod: dict[str, Any] | None, kind: str) -> str | None:
    """The status ("True", "False") of the pod's condition `kind`, None when it has none."""
    for c in ((pod or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return str(c["status"])
    return None


@dataclass
class Motion:
    root: Path
    state: Path
    region: Any
    agents: Any
    lk: DevLiveKit
    gateway: GatewayServer
    bins: Path
    desired: list[dict[str, Any]]
    secrets: dict[str, str]

    @property
    def kubeconfig(self) -> Path:
        return cluster.kubeconfig_path()

    @property
    def prometheus_url(self) -> str:
        return str(self.region.kubernetes.prometheus_url)

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(self.bins / "kubectl"), *args], input=stdin, capture_output=True, text=True,
                              env={**os.environ, "KUBECONFIG": str(self.kubeconfig)}, timeout=120)
        assert not check or proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
        return proc

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        proc = self.kubectl("get", kind, "-n", namespace, name, "-o", "json", check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(self.kubectl("get", "pods", "-n", namespace, "-l", selector,
                                                              "-o", "json").stdout)["items"]
        return items

    def manifests(self) -> str:
        lookup = env_lookup({f"VOXPLANE_SECRET_{k}": v for k, v in self.secrets.items()})
        docs = []
        for obj in self.desired:
            if obj["kind"] == "Secret":
                obj = {**obj, "stringData": resolved_string_data(obj, self.region, self.agents, lookup)}
            docs.append(yaml.safe_dump(obj, sort_keys=False))
        return "---\n".join(docs)

    def apply(self) -> None:
        """Every rendered object, as `pulumi up` applies it."""
        self.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager", FIELD_MANAGER, "-f", "-",
                     stdin=self.manifests())

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query of the dev Prometheus (the one KEDA asks)."""
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def workers(self) -> dict[str, Any]:
        from voxplane.dev.podrunner import read_workers

        return read_workers(cluster.runner_dir())

    def ready_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The pods that are Ready and not being deleted."""
        return [p for p in self.pods(namespace, selector)
                if condition(p, "Ready") == "True" and not p["metadata"].get("deletionTimestamp")]

    def worker_of(self, pod: str) -> dict[str, Any]:
        """The pod runner's record of the worker running pod `pod`."""
        return next(w for w in self.workers().values() if w["pod"] == pod)

    def worker_state(self, pod: str) -> dict[str, Any]:
        """What the worker of pod `pod` says of itself (the glue's `/worker`)."""
        w = self.worker_of(pod)
        with urllib.request.urlopen(f"http://127.0.0.1:{w['ports']['8081']}/worker", timeout=5) as r:
            state: dict[str, Any] = json.load(r)
        return state


@contextlib.contextmanager
def motion(work: Path, *, edit: Callable[[Path], None] | None = None, max_idle_processes: int | None = 2,
           inference: dict[str, str] | None = None) -> Iterator[Motion]:
    """The local region in motion under `work` (see the module docstring). `edit(root)` changes the
    manifests' copy first; `inference` maps a model name to the loopback address standing in for
    its Service (tests/agents' stand-in model server), published before any worker starts."""
    root = copy_manifests(work / "repo")
    use_free_prometheus_port(root)
    if edit is not None:
        edit(root)
    state = work / "dev-state"
    previous = os.environ.get("VOXPLANE_DEV_STATE")
    os.environ["VOXPLANE_DEV_STATE"] = str(state)
    try:
        project = load((), root).require_project()
        region, agents = project.regions[REGION], project.agents_in(REGION)
        secrets = dev_secrets(REGION, needed_secret_keys(root, REGION))
        with livekit_with_redis(region=REGION, root=root) as lk:
            config, keys = region_gateway(REGION, root, upstream=lk.livekit.http_url)
            gateway = GatewayServer(config, keys, workdir=work / "gateway").start()
            try:
                standins.publish_region_servers(region, livekit=f"127.0.0.1:{lk.livekit.port}",
                                                gateway=f"127.0.0.1:{gateway.port}")
                from voxplane.desired.common import inference_namespace

                for model, address in (inference or {}).items():
                    standins.publish_service(inference_namespace(region), model, region.models[model].port, address)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ResourceWarning)  # the control plane outlives its Popen objects
                    cluster.up(region, agents, lambda _line: None, root=root, max_idle_processes=max_idle_processes)
                with lk.client() as client:
                    by_key: dict[SecretRef | str, str] = {k: v for k, v in secrets.items()}
                    sync(region, agents, client, StaticSecrets(by_key))
                m = Motion(root, state, region, agents, lk, gateway, cluster.toolchain_bin_dir(),
                           render(REGION, root).kubernetes, secrets)
                m.apply()
                yield m
            finally:
                cluster.down(lambda _line: None, quiet=True)
                gateway.stop()
    finally:
        if previous is None:
            os.environ.pop("VOXPLANE_DEV_STATE", None)
        else:
            os.environ["VOXPLANE_DEV_STATE"] = previous


@contextlib.contextmanager
def motion_with_stand_in_models(work: Path, *, edit: Callable[[Path], None] | None = None) -> Iterator[Motion]:
    """`motion` with tests/agents' stand-in model server behind every model the agents call."""
    from ..agents.standin import StandIn

    with StandIn() as model:
        address = f"127.0.0.1:{model.port}"
        with motion(work, edit=edit, inference={"chat": address, "kokoro": address, "whisper": address}) as m:
            yield m


@contextlib.contextmanager
def call_run(m: Motion, number: str, work: Path) -> Iterator[Any]:
    """A `voxplane dev calls` run (voxplane/dev/calls.py's CallRun) to `number`, placing no call until
    asked: its callers' process (real rtc participants) and its route probe are stopped afterwards."""
    from voxplane.dev.calls import CallerProcess, CallRun, Endpoints, agents_python
    from voxplane.livekit.route import RouteProbe

    lk = m.lk.livekit
    endpoints = Endpoints(lk.http_url, lk.url, lk.api_key, lk.api_secret, m.lk.redis.address)
    callers = CallerProcess(agents_python(m.root), work / "callers.log")
    try:
        with RouteProbe(endpoints.redis) as probe:
            yield CallRun(m.region, endpoints, probe, callers, number, count=0, duration=3600)
    finally:
        callers.close()
