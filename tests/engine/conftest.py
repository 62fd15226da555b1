"""Fixtures for tests under the real Pulumi engine: the toolchain, one local control plane for the
session (its simulated nodes switched to each region in turn), a dev livekit-server per region,
and each region stack deployed from a copy of the repository.

Nothing here skips: a binary that cannot be built, or a server that cannot start, fails the test
with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from ..support.repo import REPO, copy_checkout, use_free_prometheus_port
from ..support.servers import livekit_with_redis

REGIONS = ["local", "us-east", "eu-west"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The first test of a module sets up its region's `deployment` (a control plane's nodes, then
    `pulumi up` of every object and the wait for it): minutes, more while the other lane is busy,
    so those tests get their own bound, not a check of how long it took."""
    for item in items:
        if item.nodeid.startswith("tests/engine/") and "deployment" in getattr(item, "fixturenames", ()) \
                and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(900))


@pytest.fixture(scope="session")
def dev_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The dev cluster, state backend, passphrase and dev secrets of this session, in tmp."""
    folder = tmp_path_factory.mktemp("dev-state")
    patch = pytest.MonkeyPatch()
    patch.setenv("VOXPLANE_DEV_STATE", str(folder))
    yield folder
    from voxplane.dev import cluster

    cluster.down(lambda _line: None, quiet=True)
    patch.undo()


@pytest.fixture(scope="session")
def bins() -> Path:
    """Plain-named toolchain binaries (built on first use: minutes; a failure fails the test)."""
    proc = subprocess.run(["bash", str(REPO / "scripts" / "ensure-toolchain.sh"), "all", "--print-bin-dir"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert proc.returncode == 0, f"toolchain build failed:\n{proc.stderr[-3000:]}"
    return Path(proc.stdout.strip())


@dataclass
class Deployment:
    """A region stack applied by the real engine to the dev cluster and a dev livekit-server."""

    region: str
    root: Path
    stack: Any  # voxplane.dev.stack.StackEnv
    livekit: Any  # voxplane.dev.livekit.LiveKitServer
    bins: Path
    kubeconfig: Path

    def pulumi(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return self.stack.pulumi(*args, capture=True, timeout=timeout)

    def up(self, *extra: str) -> subprocess.CompletedProcess[str]:
        proc = self.pulumi("up", "--yes", "--skip-preview", *extra)
        assert proc.returncode == 0, f"pulumi up failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
        return proc

    def preview_json(self) -> dict[str, Any]:
        proc = self.pulumi("preview", "--json")
        assert proc.returncode == 0, f"pulumi preview failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
        data: dict[str, Any] = json.loads(proc.stdout)
        return data

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(self.bins / "kubectl"), *args], capture_output=True, text=True,
                              env={**os.environ, "KUBECONFIG": str(self.kubeconfig)})
        assert not check or proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
        return proc

    def objects(self, kind: str, selector: str | None = None) -> list[dict[str, Any]]:
        sel = selector or f"app.kubernetes.io/managed-by=voxplane,app.kubernetes.io/part-of={self.region}"
        out = self.kubectl("get", kind, "-A", "-l", sel, "-o", "json").stdout
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return items


def stop_strays(root: Path) -> None:
    """Language hosts and dynamic providers a killed `pulumi` left behind (they hold no lock, but
    would keep writing LiveKit objects): pulumi's processes working in the copy at `root`."""
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        cmdline, cwd = proc.info["cmdline"] or [], proc.info["cwd"] or ""
        if any("pulumi" in arg for arg in cmdline) and Path(cwd).is_relative_to(root):
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass


@contextmanager
def agents_secrets_made(region: Any, agents: Sequence[Any], kubeconfig: Path) -> Iterator[None]:
    """While inside: the existing Secrets the agents name get dev values as soon as their namespace
    exists, as a platform team provides them (voxplane renders only what it owns) and as the pod
    runner does when agent pods run as workers. Without them KEDA cannot resolve the scale target's
    environment and leaves that ScaledObject not Ready (a kubelet would not start the pod either)."""
    from voxplane.dev import agentsecrets
    from voxplane.dev.kubeclient import KubeClient, KubeError

    kube = KubeClient(kubeconfig)
    stop = threading.Event()

    def keep_made() -> None:
        while not stop.wait(1):
            try:
                agentsecrets.ensure(kube, region, agents)
            except KubeError:
                continue  # the namespace is being made; the next round sees it

    thread = threading.Thread(target=keep_made, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(60)
        agentsecrets.ensure(kube, region, agents)  # a last, checked round: a failure fails the fixture
        kube.close()


@pytest.fixture(scope="module", params=REGIONS)
def deployment(request: pytest.FixtureRequest, dev_state: Path, bins: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    from voxplane.dev import cluster
    from voxplane.dev.stack import prepare
    from voxplane.manifest.loader import load

    region: str = request.param
    root = copy_checkout(tmp_path_factory.mktemp(f"repo-{region}") / "repo", tests=False, link_venv=True)
    if region == "local":
        use_free_prometheus_port(root)  # the dev Prometheus of a running demo keeps its port
    project = load((), root).require_project()
    # Agent pods marked Ready by kwok, no worker behind them: these tests are about the engine
    # (tests/dev runs agent pods as workers through the pod runner).
    cluster.up(project.regions[region], project.agents_in(region), lambda _line: None, agent_workers=False)
    overrides = {} if region == "local" else {"voxplane:kubeContext": cluster.CONTEXT, "voxplane:buildImages": "false"}
    with livekit_with_redis(region=region, root=root) as lk:
        stack = None
        try:
            stack = prepare(root, region, overrides=overrides, drop=["voxplane:livekitApiUrl"], bin_dir=bins,
                            extra_env={"KUBECONFIG": str(cluster.kubeconfig_path()), "LIVEKIT_URL": lk.url})
            dep = Deployment(region, root, stack, lk.livekit, bins, cluster.kubeconfig_path())
            with agents_secrets_made(project.regions[region], project.agents_in(region), dep.kubeconfig):
                dep.up()
            yield dep
        finally:
            stop_strays(root)
            if stack is not None:  # leave the cluster empty for the next region, whatever the tests did
                stack.pulumi("destroy", "--yes", "--skip-preview", capture=True, timeout=600)
