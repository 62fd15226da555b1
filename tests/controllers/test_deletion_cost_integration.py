"""The deletion-cost controller as its image runs it (the package laid out as in the image, an
interpreter with only its locked requirements), with the config the render gives it and the
ServiceAccount, Roles, RoleBindings and admission policy the render deploys, against the dev
cluster's real API server and ReplicaSet controller (kwok plays the kubelet) and its Prometheus,
scraping workers' `lk_agents_active_job_count` as the pools' PodMonitors make prometheus-operator
scrape it.

What the tests rewrite in the rendered config, and why: `metrics_port` (a free port) and
`interval_seconds` 1 (not the rendered 5 s, so a test waits seconds); the write budget in the test that
exercises it; `prometheus_url` only in the test of an unreachable Prometheus. The pools, the query
and the Prometheus address are the render's. The controller authenticates with a token of the
rendered ServiceAccount, so its RBAC is the render's too.

The support pool's replicas are the tests' to set, as the HPA would set them: its ScaledObject is
removed first, so KEDA's HPA (which the dev cluster runs) does not move them underneath.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from kubernetes import client as kube, config as kube_config
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from voxplane.dev.ports import free_port

from ..kubedrift.conftest import Cluster
from ._image import NAME, controller_image_python, stage_image_context
from .conftest import DevCluster, WorkerMetrics, poll

pytestmark = pytest.mark.integration

ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
SYSTEM = "vox-system"
ACCOUNT = "pod-deletion-cost"
NS, POOL = "vox-t-northwind", "support"
SELECTOR = "app.kubernetes.io/name=support,app.kubernetes.io/part-of=local"


# --- helpers -------------------------------------------------------------------------------------------


def pods(c: Cluster) -> dict[str, dict[str, Any]]:
    """The support pool's pods that are not being deleted, by name."""
    items = json.loads(c.kubectl("get", "pods", "-n", NS, "-l", SELECTOR, "-o", "json").stdout)["items"]
    return {p["metadata"]["name"]: p for p in items if not p["metadata"].get("deletionTimestamp")}


def costs(c: Cluster) -> dict[str, str | None]:
    return {name: (p["metadata"].get("annotations") or {}).get(ANNOTATION) for name, p in pods(c).items()}


def ready(pod: dict[str, Any]) -> bool:
    conditions = {x["type"]: x["status"] for x in (pod.get("status") or {}).get("conditions") or []}
    return (pod.get("status") or {}).get("phase") == "Running" and conditions.get("Ready") == "True"


def pool_of(c: Cluster, replicas: int) -> list[str]:
    """Fresh pods: the pool's pods deleted and `replicas` new ones Running and Ready (kwok)."""
    c.kubectl("scale", "deployment", POOL, "-n", NS, "--replicas=0")
    poll("the pool emptied", lambda: not pods(c))
    c.kubectl("scale", "deployment", POOL, "-n", NS, f"--replicas={replicas}")
    found = poll(f"{replicas} pods ready",
                     lambda: (lambda ps: ps if len(ps) == replicas and all(map(ready, ps.values())) else None)(pods(c)))
    return sorted(found)


def metric(port: int, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"{name}{labels} not in the controller's /metrics:\n{text}")


def account_kubeconfig(c: Cluster, folder: Path) -> Path:
    """A kubeconfig holding a token of the rendered ServiceAccount (TokenRequest), no other credential."""
    token = c.kubectl("create", "token", ACCOUNT, "-n", SYSTEM, "--duration", "1h").stdout.strip()
    admin = yaml.safe_load(c.kubeconfig.read_text())
    path = folder / "deletion-cost.kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "dev", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "dev", "user": ACCOUNT}}],
    }))
    path.chmod(0o600)
    return path


def scraped(c: DevCluster, worker_metrics: WorkerMetrics) -> None:
    """Wait until Prometheus holds every worker's current jobs (a first reading must not be partial)."""
    def seen() -> bool:
        got = {r["metric"]["pod"]: float(r["value"][1])
               for r in c.query(f'lk_agents_active_job_count{{job="{NS}/{POOL}"}}')}
        return got == {pod: float(n) for pod, n in worker_metrics.jobs.items()}

    poll("Prometheus scraped every worker", seen)


@pytest.fixture(scope="module", autouse=True)
def pool_without_autoscaler(cluster: DevCluster) -> None:
    cluster.kubectl("delete", "scaledobject", POOL, "-n", NS, "--wait=true")
    poll("KEDA removed the pool's HPA",
         lambda: cluster.kubectl("get", "hpa", f"keda-hpa-{POOL}", "-n", NS, check=False).returncode != 0)


Start = Callable[..., int]


@pytest.fixture
def controller(cluster: DevCluster, tmp_path: Path) -> Iterator[Start]:
    """Starts the controller with the rendered config (rewrites above); returns its metrics port."""
    started: list[subprocess.Popen[bytes]] = []

    def start(**rewrites: Any) -> int:
        (cm,) = [o for o in cluster.desired if o["kind"] == "ConfigMap" and o["metadata"]["name"] == ACCOUNT]
        config = json.loads(cm["data"]["config.json"])
        port = free_port()
        assert config["prometheus_url"] == cluster.prometheus_url, "the render sends it to the dev Prometheus"
        config.update({"metrics_port": port, "interval_seconds": 1.0, **rewrites})
        (tmp_path / "config.json").write_text(json.dumps(config))
        staged = stage_image_context(tmp_path / "opt-voxplane")
        with (tmp_path / "controller.log").open("wb") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(
                [controller_image_python(), "-m", f"voxplane.controllers.{NAME}", "run", "--config",
                 str(tmp_path / "config.json"), "--kubeconfig", str(account_kubeconfig(cluster, tmp_path)),
                 "--listen-host", "127.0.0.1"],
                cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                env={"PYTHONPATH": str(staged), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        started.append(process)

        def serving() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the controller exited {process.returncode}:\n"
                                     f"{(tmp_path / 'controller.log').read_text()[-3000:]}")
            try:
                # A first round done, read or not.
                return sum(metric(port, "voxplane_deletion_cost_errors_total", stage=stage)
                           for stage in ("prometheus", "list")) + metric(port, "voxplane_deletion_cost_rounds_total") >= 1
            except OSError:
                return False

        poll("the controller's first round", serving, timeout=60)
        return port

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=20)
    log_file = tmp_path / "controller.log"
    if log_file.exists():
        print(log_file.read_text()[-4000:])


# --- the tests ----------------------------------------------------------------------------------------


def annotate(c: Cluster, **pod_costs: str) -> None:
    for pod, cost in pod_costs.items():
        c.kubectl("annotate", "--overwrite", "pod", "-n", NS, pod, f"{ANNOTATION}={cost}")


def shrink_to(c: Cluster, replicas: int) -> set[str]:
    """Scale the pool down; the pods the real ReplicaSet controller keeps."""
    c.kubectl("scale", "deployment", POOL, "-n", NS, f"--replicas={replicas}")
    return set(poll(f"{replicas} pods left", lambda: (lambda ps: ps if len(ps) == replicas else None)(pods(c))))


def test_the_replicaset_controller_removes_the_lowest_cost_first(cluster: Cluster) -> None:
    """The premise, without the controller: the dev cluster's kube-controller-manager (v1.34)
    ranks a ReplicaSet's ready pods by the annotation when it scales down."""
    c = cluster
    a, b, d, e = pool_of(c, 4)
    annotate(c, **{a: "7", b: "0", d: "2", e: "-1"})
    assert shrink_to(c, 2) == {a, d}
    assert shrink_to(c, 1) == {a}


def test_idle_workers_are_removed_first_and_a_busy_one_only_when_none_is_idle(
        cluster: DevCluster, worker_metrics: WorkerMetrics, controller: Start) -> None:
    """Stale costs that would remove the two busy workers (as the test above shows the ReplicaSet
    does) are corrected from the live jobs, so the idle ones go."""
    c = cluster
    a, b, d, e = pool_of(c, 4)
    worker_metrics.jobs.update({a: 3, b: 0, d: 1, e: 0})
    annotate(c, **{a: "0", b: "5", d: "0", e: "5"})
    worker_metrics.scrape({p: (NS, POOL) for p in (a, b, d, e)})
    scraped(c, worker_metrics)
    port = controller()

    poll("costs = active jobs", lambda: costs(c) == {a: "3", b: "0", d: "1", e: "0"})
    assert metric(port, "voxplane_deletion_cost_writes_total") == 4

    # Calls end and start: the costs follow, with no write for what did not change.
    worker_metrics.jobs.update({a: 0, b: 2})
    poll("costs follow the jobs", lambda: costs(c) == {a: "0", b: "2", d: "1", e: "0"})
    assert metric(port, "voxplane_deletion_cost_writes_total") == 6
    assert metric(port, "voxplane_deletion_cost_skipped_writes_total") == 0
    assert metric(port, "voxplane_deletion_cost_errors_total", stage="patch") == 0

    # The real ReplicaSet controller shrinks the pool: the two idle workers go, the busy stay.
    assert shrink_to(c, 2) == {b, d}
    # None idle any more: the worker with fewer calls goes before the one with more.
    assert shrink_to(c, 1) == {b}

    # The worker's samples gone (a missed scrape, a Prometheus restart): its cost stays.
    worker_metrics.unscrape()
    poll("no sample left", lambda: not c.query(f'lk_agents_active_job_count{{job="{NS}/{POOL}"}}'))
    rounds = metric(port, "voxplane_deletion_cost_rounds_total")
    poll("three more rounds", lambda: metric(port, "voxplane_deletion_cost_rounds_total") >= rounds + 3)
    assert costs(c) == {b: "2"} and metric(port, "voxplane_deletion_cost_writes_total") == 6


def test_the_write_budget_writes_the_busiest_first_and_counts_what_it_skips(
        cluster: DevCluster, worker_metrics: WorkerMetrics, controller: Start) -> None:
    """A budget of one write (refilled once in 1000 s): of two busy workers marked idle, the one
    with more calls is written, the other waits, and every round that leaves it is counted."""
    c = cluster
    a, b = pool_of(c, 2)
    worker_metrics.jobs.update({a: 1, b: 5})
    worker_metrics.scrape({p: (NS, POOL) for p in (a, b)})
    scraped(c, worker_metrics)
    port = controller(writes_per_second=0.001, burst=1)
    poll("the busiest written", lambda: costs(c) == {a: None, b: "5"})
    poll("rounds skipping the other counted", lambda: metric(port, "voxplane_deletion_cost_skipped_writes_total") >= 3)
    assert metric(port, "voxplane_deletion_cost_writes_total") == 1
    assert costs(c) == {a: None, b: "5"}


def test_an_unreachable_prometheus_is_counted_and_writes_nothing(cluster: DevCluster, controller: Start) -> None:
    """Nothing to read: every round fails at Prometheus, counted; no cost is touched and the
    controller is alive but not ready."""
    c = cluster
    (a,) = pool_of(c, 1)
    annotate(c, **{a: "3"})
    port = controller(prometheus_url=f"http://127.0.0.1:{free_port()}", request_timeout_seconds=2.0)
    poll("failed reads counted", lambda: metric(port, "voxplane_deletion_cost_errors_total", stage="prometheus") >= 3)
    assert metric(port, "voxplane_deletion_cost_writes_total") == 0 and costs(c) == {a: "3"}
    for path, status in (("/healthz", 200), ("/readyz", 503)):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                got = response.status
        except urllib.error.HTTPError as e:
            got = e.code
        assert got == status, path


@pytest.mark.parametrize("change, allowed", [
    # Patches, as the controller sends them (the account may not even `get` a pod).
    ({"metadata": {"annotations": {ANNOTATION: "4"}}}, True),
    ({"metadata": {"annotations": {"example.com/other": "1"}}}, False),
    ({"metadata": {"annotations": {ANNOTATION: "4", "example.com/other": "1"}}}, False),
    ({"metadata": {"labels": {"app.kubernetes.io/name": "hijacked"}}}, False),
    ({"metadata": {"finalizers": ["example.com/hold"]}}, False),
    ([{"op": "replace", "path": "/spec/containers/0/image", "value": "registry.example/evil:1"}], False),
], ids=["the-cost", "another-annotation", "the-cost-and-another", "a-label", "a-finalizer", "an-image"])
def test_the_admission_policy_lets_its_account_change_the_annotation_only(
        cluster: Cluster, tmp_path: Path, change: Any, allowed: bool) -> None:
    """RBAC lets the account patch tenant pods; the rendered ValidatingAdmissionPolicy, evaluated
    by the real API server, refuses every change of its but the deletion cost."""
    c = cluster
    (pod,) = pool_of(c, 1)
    api = kube.CoreV1Api(kube_config.new_client_from_config(config_file=str(account_kubeconfig(c, tmp_path))))
    kind = "application/json-patch+json" if isinstance(change, list) else "application/merge-patch+json"
    try:
        api.patch_namespaced_pod(pod, NS, change, _content_type=kind)
        refused = None
    except ApiException as e:
        refused = e
    if allowed:
        assert refused is None, refused
        assert costs(c) == {pod: "4"}
    else:
        assert refused is not None and "ValidatingAdmissionPolicy" in str(refused.body), refused
        assert "pod-deletion-cost may" in str(refused.body), refused.body
        assert costs(c) == {pod: None}
    # The policy binds the controller's account only: the platform (admin here) still may.
    c.kubectl("label", "--overwrite", "-n", NS, f"pod/{pod}", "example.com/checked=1")


@pytest.mark.parametrize("verb, resource, namespace, allowed", [
    ("list", "pods", "vox-t-northwind", True),
    ("patch", "pods", "vox-t-northwind", True),
    ("patch", "pods", "vox-t-bellavista", True),
    ("get", "pods", "vox-t-northwind", False),
    ("watch", "pods", "vox-t-northwind", False),
    ("delete", "pods", "vox-t-northwind", False),
    ("create", "pods", "vox-t-northwind", False),
    ("patch", "pods --subresource=status", "vox-t-northwind", False),
    ("create", "pods --subresource=eviction", "vox-t-northwind", False),
    ("get", "secrets", "vox-t-northwind", False),
    ("patch", "deployments.apps", "vox-t-northwind", False),
    ("patch", "pods", "vox-system", False),
    ("list", "pods", "vox-inference", False),
    ("list", "pods", "default", False),
    ("list", "nodes", "", False),
])
def test_the_rendered_account_may_list_and_patch_tenant_pods_and_nothing_else(
        cluster: Cluster, verb: str, resource: str, namespace: str, allowed: bool) -> None:
    """Asked of the API server's own authorizer (RBAC), as the rendered ServiceAccount."""
    args = ["auth", "can-i", verb, *resource.split(), "--as", f"system:serviceaccount:{SYSTEM}:{ACCOUNT}"]
    args += ["-n", namespace] if namespace else []
    answer = cluster.kubectl(*args, check=False)
    assert answer.stdout.strip() == ("yes" if allowed else "no"), (answer.stdout, answer.stderr)
