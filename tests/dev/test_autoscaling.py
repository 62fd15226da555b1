"""The dev cluster's autoscaling loop, end to end with real parts only: Prometheus scrapes a metric
this test serves on loopback, KEDA's operator reconciles a ScaledObject on a Prometheus query into
its HPA, KEDA's adapter answers the external metrics API through the API server's aggregation
layer, and the controller manager's HPA controller scales the Deployment up and back down.

What this protects: the aggregation-layer wiring (front-proxy flags, the ExternalName Service, the
APIService's CA bundle), KEDA's identity and RBAC as its manifests grant them, the operator-adapter
mutual TLS, and the ports all of it binds. Nothing is faked: the metric source is a target that
Prometheus scrapes, as it scrapes a worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from voxplane.dev import autoscaling, cluster
from voxplane.manifest.loader import load

from tests.support.gauges import GaugeTarget
from tests.support.repo import copy_manifests, use_free_prometheus_port
from tests.support.wait import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

NAMESPACE = "autoscaling-loop"
WORKLOAD = "load-worker"
METRIC = "voxplane_dev_test_load"
#: Each replica is meant to carry this much load (the ScaledObject's threshold, an AverageValue).
PER_REPLICA = 2


@pytest.fixture(scope="module")
def dev_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The dev cluster of the `local` region, in a temporary state folder, stopped afterwards. The
    region's `prometheus_url` is a loopback address, as a region run by the dev cluster sets it:
    the dev Prometheus listens there."""
    patch = pytest.MonkeyPatch()
    patch.setenv("VOXPLANE_DEV_STATE", str(tmp_path_factory.mktemp("dev-state")))
    root = copy_manifests(tmp_path_factory.mktemp("repo") / "repo")
    use_free_prometheus_port(root)
    project = load((), root).require_project()
    try:
        state = cluster.up(project.regions["local"], project.agents_in("local"), lambda _line: None)
        yield {**state, "prometheus_url": project.regions["local"].kubernetes.prometheus_url}
    finally:
        cluster.down(lambda _line: None, quiet=True)
        patch.undo()


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    bins = cluster.toolchain_bin_dir()
    proc = subprocess.run([str(bins / "kubectl"), *args], input=stdin, capture_output=True, text=True,
                          env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig_path())})
    assert not check or proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
    return proc


def get(kind: str, name: str) -> dict[str, Any] | None:
    proc = kubectl("get", kind, name, "-n", NAMESPACE, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def poll(what: str, check: Callable[[], Any], timeout: float = 240) -> Any:
    """`check()` each second until it returns something true (tests.support.wait_until)."""
    return wait_until(what, check, timeout=timeout, interval=1.0)


def condition(obj: dict[str, Any] | None, kind: str) -> str | None:
    for c in (obj or {}).get("status", {}).get("conditions", []):
        if c.get("type") == kind:
            return str(c.get("status"))
    return None


def objects(prometheus: str) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": WORKLOAD}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": WORKLOAD, "namespace": NAMESPACE},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      # Any simulated node will do; kwok marks the pod Running, nothing is pulled.
                      "tolerations": [{"operator": "Exists"}],
                      "containers": [{"name": "worker", "image": "registry.k8s.io/pause:3.10",
                                      "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}},
        {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": WORKLOAD, "namespace": NAMESPACE},
         "spec": {"scaleTargetRef": {"name": WORKLOAD}, "pollingInterval": 5,
                  "minReplicaCount": 1, "maxReplicaCount": 6,
                  # Without it the HPA waits 5 minutes before it scales down.
                  "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
                      "scaleDown": {"stabilizationWindowSeconds": 0}}}},
                  "triggers": [{"type": "prometheus", "metadata": {
                      "serverAddress": prometheus, "query": f"sum({METRIC})", "threshold": str(PER_REPLICA)}}]}},
    ]


def test_prometheus_keda_and_the_hpa_controller_scale_a_deployment_up_and_back_down(dev_cluster: dict[str, Any]) -> None:
    target = GaugeTarget(METRIC)
    autoscaling.write_scrape_target("autoscaling-loop", [target.address], {"job": "load-source"})
    try:
        # Where the region's ScaledObjects send KEDA (the render's serverAddress).
        assert autoscaling.prometheus_url(dev_cluster) == dev_cluster["prometheus_url"]
        kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(objects(dev_cluster["prometheus_url"])))

        # The operator reconciles the ScaledObject: its HPA, and Ready; no load yet, so not Active.
        so = poll("Ready ScaledObject", lambda: (lambda o: o if condition(o, "Ready") == "True" else None)(
            get("scaledobject", WORKLOAD)))
        assert so["status"]["hpaName"] == f"keda-hpa-{WORKLOAD}"
        hpa = poll("HPA of the ScaledObject", lambda: get("hpa", f"keda-hpa-{WORKLOAD}"))
        assert hpa["spec"]["scaleTargetRef"]["name"] == WORKLOAD
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 6)
        external = hpa["spec"]["metrics"][0]["external"]
        poll("inactive ScaledObject at load 0", lambda: condition(get("scaledobject", WORKLOAD), "Active") == "False")

        # Load for three replicas: Prometheus scrapes it, the aggregator serves KEDA's value, the
        # HPA controller raises the Deployment's replicas.
        target.value = 3 * PER_REPLICA
        selector = ",".join(f"{k}={v}" for k, v in external["metric"]["selector"]["matchLabels"].items())
        path = (f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/{external['metric']['name']}"
                f"?labelSelector={urllib.parse.quote(selector)}")

        def metric_value() -> str | None:
            proc = kubectl("get", "--raw", path, check=False)
            if proc.returncode != 0:
                return None
            items = json.loads(proc.stdout)["items"]
            return items[0]["value"] if items and items[0]["value"] == str(3 * PER_REPLICA) else None

        poll("external metric through the aggregation layer", metric_value)
        poll("active ScaledObject", lambda: condition(get("scaledobject", WORKLOAD), "Active") == "True")
        poll("Deployment scaled to 3 ready replicas", lambda: (lambda d: d and d["spec"]["replicas"] == 3
                                                                and d["status"].get("readyReplicas") == 3)(
            get("deployment", WORKLOAD)))

        # The HPA controller did it (not KEDA, which only scales to and from zero).
        events = json.loads(kubectl("get", "events", "-n", NAMESPACE, "--field-selector",
                                    f"involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name=keda-hpa-{WORKLOAD}",
                                    "-o", "json").stdout)["items"]
        assert any(e["reason"] == "SuccessfulRescale" and "New size: 3" in e["message"] for e in events), events

        # The load goes away: back to the minimum.
        target.value = 0
        poll("Deployment scaled back to 1 replica", lambda: (lambda d: d and d["spec"]["replicas"] == 1
                                                             and d["status"].get("replicas") == 1)(
            get("deployment", WORKLOAD)))
        poll("inactive ScaledObject after the load", lambda: condition(get("scaledobject", WORKLOAD), "Active") == "False")
        hpa = get("hpa", f"keda-hpa-{WORKLOAD}")
        assert hpa is not None and hpa["status"]["desiredReplicas"] == 1
    finally:
        autoscaling.remove_scrape_target("autoscaling-loop")
        kubectl("delete", "namespace", NAMESPACE, "--wait=false", "--ignore-not-found", check=False)
        target.close()


def listening(pid: int) -> set[tuple[str, int]]:
    """The (address, port) of every TCP socket `pid` listens on, from /proc (IPv4 and IPv6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            hex_addr, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_addr)
            # /proc prints addresses as 32-bit words in host (little-endian) order.
            words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            if table == "tcp":
                address = ".".join(str(b) for b in words)
            else:
                address = "::" if not any(words) else words.hex()
            found.add((address, int(hex_port, 16)))
    return found


def test_the_autoscaling_stack_listens_on_loopback_only_on_its_own_ports(dev_cluster: dict[str, Any]) -> None:
    """KEDA's defaults would take 8080 and 8081 on every interface (8081 is the agents' health
    port). One listener cannot be moved to loopback: the adapter's own /metrics takes a port
    only and binds every interface (cmd/adapter RunMetricsServer); it gets a free port."""
    procs = dev_cluster["processes"]
    ports = dev_cluster["ports"]
    expected = {
        "prometheus": {("127.0.0.1", ports["prometheus"])},
        "keda-operator": {("127.0.0.1", ports["keda_metrics"]), ("127.0.0.1", ports["keda_health"]),
                          ("127.0.0.1", ports["keda_grpc"])},
        "keda-adapter": {("127.0.0.1", ports["keda_adapter"])},
    }
    for name, wanted in expected.items():
        found = listening(procs[name]["pid"])
        if name == "keda-adapter":
            every_interface = {("::", ports["keda_adapter_metrics"]), ("0.0.0.0", ports["keda_adapter_metrics"])}
            assert len(found & every_interface) == 1, found
            found -= every_interface
        assert found == wanted, name


def test_down_stops_every_process_it_started(dev_cluster: dict[str, Any]) -> None:
    pids = {name: p["pid"] for name, p in dev_cluster["processes"].items()}
    assert set(autoscaling.PROCESS_NAMES) <= set(pids)
    cluster.down(lambda _line: None, quiet=True)

    def alive(pid: int) -> bool:  # a zombie (state Z) has exited
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    assert [name for name, pid in pids.items() if alive(pid)] == []
    assert cluster.running() is None
