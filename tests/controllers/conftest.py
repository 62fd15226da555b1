"""Real servers for the controllers' integration tests: the dev cluster (etcd, kube-apiserver,
controller-manager, scheduler, kwok) with the `local` region applied as `pulumi up` applies it, and
a Prometheus (Debian's package, the one the dev cluster's autoscaling stack runs) scraping what a
test serves on loopback, labelled as prometheus-operator labels a PodMonitor's targets.

Nothing here skips: a binary that is missing, or a server that cannot start, fails the test.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..kubedrift.conftest import Cluster, copy_tree, secret_env

REGION = "local"
#: Prometheus scrapes (and the tests read) this often; the workers' PodMonitors say 15s.
SCRAPE_SECONDS = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Any, timeout: float = 90.0, every: float = 0.25) -> Any:
    """Poll `check()` until it returns something truthy; fail saying `what` when it never does."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not reached in {timeout:.0f} s (last: {last!r})")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The session's dev cluster for `local` in its own VOXPLANE_DEV_STATE, the region applied."""
    from voxplane.dev import cluster as dev_cluster
    from voxplane.loader import load
    from voxplane.render import render

    state = tmp_path_factory.mktemp("controllers-dev-state")
    root = copy_tree(tmp_path_factory.mktemp("controllers-repo") / "repo")
    project = load((), root).require_project()
    region, agents = project.regions[REGION], project.agents_in(REGION)
    bins = dev_cluster.toolchain_bin_dir()
    for binary in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl"):
        assert (bins / binary).is_file(), f"{binary} missing in {bins}"
    try:
        with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
            patch.setenv("VOXPLANE_DEV_STATE", str(state))
            warnings.simplefilter("ignore", ResourceWarning)  # the control plane outlives its Popen objects
            dev_cluster.up(region, agents, lambda _line: None)
            kubeconfig = dev_cluster.kubeconfig_path()
            gc.collect()
        c = Cluster(root, bins, kubeconfig, region, agents, secret_env(region, agents))
        c.desired = render(REGION, root).kubernetes
        c.apply()
        yield c
    finally:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("VOXPLANE_DEV_STATE", str(state))
            dev_cluster.down(lambda _line: None, quiet=True)


# --- workers' metrics, as a test sets them ---------------------------------------------------------


@dataclass
class WorkerMetrics:
    """A loopback server answering `/metrics/<pod>` with that pod's `lk_agents_active_job_count`
    (the gauge livekit-agents exports, with its own `nodename` label)."""

    port: int
    jobs: dict[str, int] = field(default_factory=dict)

    def text(self, pod: str) -> str | None:
        if pod not in self.jobs:
            return None
        return ("# HELP lk_agents_active_job_count Active jobs\n# TYPE lk_agents_active_job_count gauge\n"
                f'lk_agents_active_job_count{{nodename="{pod}"}} {self.jobs[pod]}\n')


@pytest.fixture
def worker_metrics() -> Iterator[WorkerMetrics]:
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
    server.shutdown()
    server.server_close()


# --- Prometheus ------------------------------------------------------------------------------------


@dataclass
class Prometheus:
    url: str
    targets_file: Path
    process: subprocess.Popen[bytes]

    def scrape(self, metrics: WorkerMetrics, pods: dict[str, tuple[str, str]]) -> None:
        """Scrape each pod (name -> (namespace, pool)) as its pool's PodMonitor makes
        prometheus-operator scrape it: `job="<namespace>/<pool>"`, `namespace`, `pod` target labels."""
        groups = [{"targets": [f"127.0.0.1:{metrics.port}"],
                   "labels": {"__metrics_path__": f"/metrics/{pod}", "job": f"{ns}/{pool}", "namespace": ns,
                              "pod": pod, "container": "agent", "endpoint": "metrics"}}
                  for pod, (ns, pool) in sorted(pods.items())]
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(self.targets_file)  # Prometheus never reads a half-written file

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def prometheus_binary() -> str:
    """Debian's prometheus (bookworm 2.42), on PATH or where the toolchain links it."""
    from voxplane.dev.cluster import toolchain_bin_dir

    for candidate in (shutil.which("prometheus"), str(toolchain_bin_dir() / "prometheus")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("prometheus is not installed: `apt-get install prometheus` (Debian bookworm's 2.42), as the dev "
                "cluster's autoscaling stack installs it")


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    folder = tmp_path / "prometheus"
    (folder / "data").mkdir(parents=True)
    targets = folder / "workers.json"
    targets.write_text("[]")
    (folder / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": f"{SCRAPE_SECONDS}s"},
        "scrape_configs": [{"job_name": "workers", "honor_labels": False,
                            "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "1s"}]}],
    }))
    port = free_port()
    with (folder / "prometheus.log").open("wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen([prometheus_binary(), "--config.file", str(folder / "prometheus.yml"),
                                    "--storage.tsdb.path", str(folder / "data"), "--web.listen-address",
                                    f"127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Prometheus(f"http://127.0.0.1:{port}", targets, process)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited {process.returncode}: {(folder / 'prometheus.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    try:
        wait_for("prometheus ready", ready, timeout=60)
        yield server
    finally:
        server.stop()
