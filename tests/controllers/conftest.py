"""Real servers for the controllers' integration tests: the dev cluster (etcd, kube-apiserver,
controller-manager, scheduler, kwok, and its autoscaling stack: Prometheus, KEDA) with the `local`
region applied as `pulumi up` applies it, and workers' metrics a test serves on loopback, which the
dev Prometheus scrapes labelled as prometheus-operator labels a PodMonitor's targets.

The region's `prometheus_url` is a loopback address, as a region run by the dev cluster sets it:
the dev Prometheus listens there, so the controller's rendered config reaches it unchanged.

Nothing here skips: a binary that is missing, or a server that cannot start, fails the test.
"""

from __future__ import annotations

import gc
import json
import threading
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, TypeVar

import pytest

from voxplane.dev import autoscaling
from voxplane.dev.ports import free_port

from ..kubedrift.conftest import Cluster, secret_env
from ..support.repo import copy_manifests, use_free_prometheus_port
from ..support.wait import wait_until

REGION = "local"
T = TypeVar("T")


def poll(what: str, check: Callable[[], T], timeout: float = 120) -> T:
    """`check()` until it returns something true (tests.support.wait_until)."""
    return wait_until(what, check, timeout=timeout, interval=0.25)


@dataclass
class DevCluster(Cluster):
    """The dev cluster with `local` applied, and its Prometheus."""

    prometheus_url: str = ""

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    """The module's dev cluster for `local` in its own VOXPLANE_DEV_STATE (set for the module, so
    the dev Prometheus' scrape targets land in it), the region applied."""
    from voxplane.dev import cluster as dev_cluster
    from voxplane.deploy.render import render
    from voxplane.manifest.loader import load

    patch = pytest.MonkeyPatch()
    patch.setenv("VOXPLANE_DEV_STATE", str(tmp_path_factory.mktemp("controllers-dev-state")))
    root = copy_manifests(tmp_path_factory.mktemp("controllers-repo") / "repo")
    use_free_prometheus_port(root)
    project = load((), root).require_project()
    region, agents = project.regions[REGION], project.agents_in(REGION)
    bins = dev_cluster.toolchain_bin_dir()
    for binary in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl", "prometheus"):
        assert (bins / binary).is_file(), f"{binary} missing in {bins}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)  # the control plane outlives its Popen objects
            state = dev_cluster.up(region, agents, lambda _line: None, agent_workers=False)  # its pods are stand-ins
            gc.collect()
        c = DevCluster(root, bins, dev_cluster.kubeconfig_path(), region, agents, secret_env(region, agents),
                       prometheus_url=autoscaling.prometheus_url(state))
        assert c.prometheus_url == region.kubernetes.prometheus_url
        c.desired = render(REGION, root).kubernetes
        c.apply()
        yield c
    finally:
        dev_cluster.down(lambda _line: None, quiet=True)
        patch.undo()


# --- workers' metrics, as a test sets them ---------------------------------------------------------


@dataclass
class WorkerMetrics:
    """A loopback server answering `/metrics/<pod>` with that pod's `lk_agents_active_job_count`
    (the gauge livekit-agents exports, with its own `nodename` label), and the dev Prometheus'
    scrape targets for it."""

    port: int
    jobs: dict[str, int] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)

    def text(self, pod: str) -> str | None:
        if pod not in self.jobs:
            return None
        return ("# HELP lk_agents_active_job_count Active jobs\n# TYPE lk_agents_active_job_count gauge\n"
                f'lk_agents_active_job_count{{nodename="{pod}"}} {self.jobs[pod]}\n')

    def scrape(self, pods: dict[str, tuple[str, str]]) -> None:
        """Have the dev Prometheus scrape each pod (name -> (namespace, pool)) as its pool's
        PodMonitor makes prometheus-operator scrape it: `job="<namespace>/<pool>"`, `namespace`,
        `pod` target labels."""
        for pod, (ns, pool) in sorted(pods.items()):
            name = f"deletion-cost-test-{pod}"
            autoscaling.write_scrape_target(name, [f"127.0.0.1:{self.port}"], {
                "__metrics_path__": f"/metrics/{pod}", "job": f"{ns}/{pool}", "namespace": ns, "pod": pod,
                "container": "agent", "endpoint": "metrics"})
            self.targets.append(name)

    def unscrape(self) -> None:
        for name in self.targets:
            autoscaling.remove_scrape_target(name)
        self.targets.clear()


@pytest.fixture
def worker_metrics(cluster: DevCluster) -> Iterator[WorkerMetrics]:
    metrics = WorkerMetrics(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the base class's name)
            body = metrics.text(self.path.removeprefix("/metrics/"))
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write((body or "").encode())

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", metrics.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield metrics
    metrics.unscrape()
    server.shutdown()
    server.server_close()
