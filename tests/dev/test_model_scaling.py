"""A speech model scales on the live calls of the agents that use it, end to end with real parts:
the ScaledObject and StatefulSet are the real render's (the `local` region, whose Kokoro-FastAPI
exports no metrics), the dev Prometheus scrapes each agent pool's `lk_agents_active_job_count`
from a target this test serves, labelled as prometheus-operator labels a pool's PodMonitor targets
(`namespace`, `job=<namespace>/<agent>`), KEDA's operator and adapter turn the rendered query into
the external metric, and the controller manager's HPA controller scales the StatefulSet.

What this protects: the query selects exactly the pools that use the model (a pool that does not
is not counted), it sums them, it reads 0 before any call, and replicas follow calls over
`calls_per_replica`, the number `voxplane capacity` sizes the model with.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from voxplane.plan.capacity import replica_calls
from voxplane.desired.common import ACTIVE_JOBS_METRIC, tenant_namespace
from voxplane.desired.inference import calls_target, model_clients
from voxplane.dev import autoscaling, cluster
from voxplane.manifest.loader import load
from voxplane.manifest.quantity import parse_quantity
from voxplane.deploy.render import render

from tests.support.gauges import GaugeTarget
from tests.support.repo import copy_manifests, use_free_prometheus_port
from tests.support.wait import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REGION, MODEL = "local", "kokoro"
NAMESPACE = "vox-inference"
#: The local region's kokoro has max_replicas 1; the test's copy allows a scale-up to show.
MAX_REPLICAS = 3


@pytest.fixture(scope="module")
def dev_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The dev cluster of a copy of the `local` region whose `prometheus_url` is a loopback address
    (the dev Prometheus listens there) and whose kokoro may grow to MAX_REPLICAS; stopped afterwards."""
    patch = pytest.MonkeyPatch()
    patch.setenv("VOXPLANE_DEV_STATE", str(tmp_path_factory.mktemp("dev-state")))
    root = copy_manifests(tmp_path_factory.mktemp("repo") / "repo")
    use_free_prometheus_port(root, REGION)
    manifest = root / "regions" / f"{REGION}.yaml"
    text = manifest.read_text()
    assert "\n  kokoro:\n" in text
    text = text.replace("\n  kokoro:\n", f"\n  kokoro:\n    max_replicas: {MAX_REPLICAS}\n", 1)
    manifest.write_text(text)
    project = load((), root).require_project()
    try:
        state = cluster.up(project.regions[REGION], project.agents_in(REGION), lambda _line: None, agent_workers=False)
        yield {"state": state, "project": project, "root": root}
    finally:
        cluster.down(lambda _line: None, quiet=True)
        patch.undo()


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(cluster.toolchain_bin_dir() / "kubectl"), *args], input=stdin, capture_output=True,
                          text=True, env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig_path())})
    assert not check or proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
    return proc


def get(kind: str, name: str) -> dict[str, Any] | None:
    proc = kubectl("get", kind, name, "-n", NAMESPACE, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def poll(what: str, check: Any, timeout: float = 300) -> Any:
    return wait_until(what, check, timeout=timeout, interval=1.0)


def ready(obj: dict[str, Any] | None) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in (obj or {}).get("status", {}).get("conditions", []))


def prometheus_value(url: str, query: str) -> float | None:
    """The one value of an instant query on the dev Prometheus; None when it has no sample."""
    with urllib.request.urlopen(f"{url}/api/v1/query?query={urllib.parse.quote(query)}", timeout=5) as r:
        result = json.loads(r.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_a_model_without_metrics_scales_on_the_calls_of_the_agents_that_use_it(dev_cluster: dict[str, Any]) -> None:
    project, root = dev_cluster["project"], dev_cluster["root"]
    region = project.regions[REGION]
    model = region.models[MODEL]
    per_replica = replica_calls(model)
    objects = render(REGION, root).kubernetes

    def rendered(kind: str, name: str) -> dict[str, Any]:
        return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name
                    and o["metadata"].get("namespace") in (None, NAMESPACE))

    # Nothing scrapes Kokoro-FastAPI (it serves no metrics): no PodMonitor of the model.
    assert not [o for o in objects if o["kind"] == "PodMonitor" and o["metadata"]["name"] == MODEL]
    scaled = rendered("ScaledObject", MODEL)
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["metadata"]["serverAddress"] == region.kubernetes.prometheus_url
    assert trigger["metadata"]["threshold"] == calls_target(model)

    # One target per agent pool that uses the model, labelled as its PodMonitor's targets are; and
    # one pool of the same tenant namespace that does not use it.
    clients = sorted(model_clients(model, project.agents_in(REGION)), key=lambda a: (a.tenant, a.name))
    assert len(clients) >= 2, "the sum is only shown with two pools or more"
    pools: dict[str, GaugeTarget] = {}
    outsider_ns = tenant_namespace(region, clients[0].tenant)
    labels = {f"{tenant_namespace(region, a.tenant)}/{a.name}": tenant_namespace(region, a.tenant) for a in clients}
    labels[f"{outsider_ns}/not-a-{MODEL}-user"] = outsider_ns
    try:
        for job, namespace in labels.items():
            pools[job] = GaugeTarget(ACTIVE_JOBS_METRIC)
            autoscaling.write_scrape_target(f"model-scaling-{job.replace('/', '-')}", [pools[job].address],
                                            {"namespace": namespace, "job": job})
        outsider = pools[f"{outsider_ns}/not-a-{MODEL}-user"]
        users = [pools[f"{tenant_namespace(region, a.tenant)}/{a.name}"] for a in clients]

        docs = [rendered("Namespace", NAMESPACE), rendered("StatefulSet", MODEL), scaled]
        kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs))
        so = poll("Ready ScaledObject", lambda: (lambda o: o if ready(o) else None)(get("scaledobject", MODEL)))
        hpa = poll("HPA of the ScaledObject", lambda: get("hpa", so["status"]["hpaName"]))
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (model.min_replicas, MAX_REPLICAS)
        external = hpa["spec"]["metrics"][0]["external"]
        selector = ",".join(f"{k}={v}" for k, v in external["metric"]["selector"]["matchLabels"].items())
        path = (f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/{external['metric']['name']}"
                f"?labelSelector={urllib.parse.quote(selector)}")

        def metric() -> float | None:
            proc = kubectl("get", "--raw", path, check=False)
            items = json.loads(proc.stdout)["items"] if proc.returncode == 0 else []
            return float(parse_quantity(items[0]["value"])) if items else None  # a Quantity: "21", "500m"

        def replicas(n: int) -> bool:
            sts = get("statefulset", MODEL)
            return bool(sts) and sts["spec"]["replicas"] == n and sts["status"].get("readyReplicas") == n

        prometheus = autoscaling.prometheus_url(dev_cluster["state"])
        # Every pool scraped, no call anywhere: the model's signal is 0, not "no data".
        for job in labels:
            poll(f"{job} scraped", lambda job=job: prometheus_value(prometheus, f'{ACTIVE_JOBS_METRIC}{{job="{job}"}}') == 0)
        poll("external metric 0 before any call", lambda: metric() == 0)
        poll(f"{model.min_replicas} ready replica at the start", lambda: replicas(model.min_replicas))

        # Calls of a pool that does not use the model: Prometheus has them, the model's signal does not.
        outsider.value = 10 * per_replica
        poll("the outsider's calls in Prometheus",
             lambda: prometheus_value(prometheus, f'{ACTIVE_JOBS_METRIC}{{job="{outsider_ns}/not-a-{MODEL}-user"}}')
             == 10 * per_replica)
        assert metric() == 0

        # Calls of the pools that use it, one more than the present replicas carry: summed, and a
        # replica added at once, as many as the calls need (not 10% later: the HPA's tolerance).
        for calls, want in ((per_replica + 1, 2), (2 * per_replica + 1, 3)):
            shares = [calls // len(users)] * len(users)
            shares[0] += calls - sum(shares)
            for pool, share in zip(users, shares, strict=True):
                pool.value = share
            poll(f"external metric {calls}", lambda calls=calls: metric() == calls)
            poll(f"{want} ready replicas for {calls} calls", lambda want=want: replicas(want))

        events = json.loads(kubectl("get", "events", "-n", NAMESPACE, "--field-selector",
                                    f"involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name={hpa['metadata']['name']}",
                                    "-o", "json").stdout)["items"]
        sizes = {e["message"] for e in events if e["reason"] == "SuccessfulRescale"}
        assert any("New size: 2" in m for m in sizes) and any("New size: 3" in m for m in sizes), sizes
    finally:
        for job, target in pools.items():
            autoscaling.remove_scrape_target(f"model-scaling-{job.replace('/', '-')}")
            target.close()
        kubectl("delete", "namespace", NAMESPACE, "--wait=false", "--ignore-not-found", check=False)
