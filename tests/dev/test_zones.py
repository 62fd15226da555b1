"""Traffic to a model stays in the caller's zone, as far as the control plane decides it: on the
dev cluster (real kube-apiserver, the controller manager's EndpointSlice controller, kwok nodes
labelled with the zones the `local` region declares), the model Service the real render gives,
with `trafficDistribution: PreferClose`, gets each ready endpoint hinted for its own zone; the same
Service without the field gets no hints. kube-proxy (or a CNI that replaces it) routes by those
hints in a real cluster; nothing here routes packets (README, "Traffic stays in the zone").
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from voxplane.dev import cluster
from voxplane.manifest.loader import load
from voxplane.deploy.render import render

from tests.support.repo import copy_manifests, use_free_prometheus_port
from tests.support.wait import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REGION, MODEL = "local", "kokoro"
NAMESPACE = "vox-inference"
ZONE = "topology.kubernetes.io/zone"
#: One replica per GPU node of the local region (three one-GPU nodes over its two zones).
REPLICAS = 3


@pytest.fixture(scope="module")
def dev_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    patch = pytest.MonkeyPatch()
    patch.setenv("VOXPLANE_DEV_STATE", str(tmp_path_factory.mktemp("dev-state")))
    root = copy_manifests(tmp_path_factory.mktemp("repo") / "repo")
    use_free_prometheus_port(root, REGION)
    project = load((), root).require_project()
    try:
        cluster.up(project.regions[REGION], project.agents_in(REGION), lambda _line: None, agent_workers=False)
        yield {"project": project, "root": root}
    finally:
        cluster.down(lambda _line: None, quiet=True)
        patch.undo()


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(cluster.toolchain_bin_dir() / "kubectl"), *args], input=stdin, capture_output=True,
                          text=True, env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig_path())})
    assert not check or proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
    return proc


def items(*args: str) -> list[dict[str, Any]]:
    return list(json.loads(kubectl("get", *args, "-o", "json").stdout)["items"])


def endpoints(service: str) -> list[dict[str, Any]]:
    """The endpoints of every EndpointSlice the controller keeps for `service`."""
    slices = items("endpointslices", "-n", NAMESPACE, "-l", f"kubernetes.io/service-name={service}")
    # A slice with no endpoints yet has `"endpoints": null`: the API omits nothing for an empty list.
    return [e for s in slices for e in s.get("endpoints") or []]


def test_the_model_service_gets_its_endpoints_hinted_for_their_own_zones(dev_cluster: dict[str, Any]) -> None:
    project, root = dev_cluster["project"], dev_cluster["root"]
    declared = list(project.regions[REGION].kubernetes.zones)
    assert len(declared) >= 2, "the local region declares two zones or more"
    nodes = {n["metadata"]["name"]: n["metadata"]["labels"] for n in items("nodes")}
    assert {labels[ZONE] for labels in nodes.values()} == set(declared)

    objects = render(REGION, root).kubernetes

    def rendered(kind: str, name: str) -> dict[str, Any]:
        return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name
                    and o["metadata"].get("namespace") in (None, NAMESPACE))

    service = rendered("Service", MODEL)
    assert service["spec"]["trafficDistribution"] == "PreferClose"
    workload = rendered("StatefulSet", MODEL)
    workload["spec"]["replicas"] = REPLICAS  # what KEDA would set; one replica per GPU node
    try:
        kubectl("apply", "--server-side", "-f", "-",
                stdin=yaml.safe_dump_all([rendered("Namespace", NAMESPACE), service, rendered("Service", f"{MODEL}-headless"),
                                          workload]))

        def hinted() -> list[dict[str, Any]] | None:
            found = endpoints(MODEL)
            ready = [e for e in found if e.get("conditions", {}).get("ready")]
            return found if len(ready) == REPLICAS and all(e.get("hints") for e in ready) else None

        found = wait_until("three ready endpoints of the model Service, each with hints", hinted, timeout=300, interval=1.0)
        pods = {p["metadata"]["name"]: p for p in items("pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={MODEL}")}
        for endpoint in found:
            pod = pods[endpoint["targetRef"]["name"]]
            # kwok gives pods an address, which is what the endpoint carries.
            assert endpoint["addresses"] == [pod["status"]["podIP"]]
            zone = nodes[endpoint["nodeName"]][ZONE]
            assert endpoint["zone"] == zone
            assert endpoint["hints"] == {"forZones": [{"name": zone}]}
        assert len({e["zone"] for e in found}) >= 2, "the replicas span the region's zones"

        # The headless Service over the same pods asks for nothing: no hints.
        wait_until("the headless Service's endpoints", lambda: len(endpoints(f"{MODEL}-headless")) == REPLICAS, timeout=60)
        assert all("hints" not in e for e in endpoints(f"{MODEL}-headless"))

        # Without trafficDistribution the controller takes the hints away again: the field did it.
        kubectl("patch", "service", MODEL, "-n", NAMESPACE, "--type=json",
                "-p", json.dumps([{"op": "remove", "path": "/spec/trafficDistribution"}]))
        wait_until("hints removed with the field", lambda: all("hints" not in e for e in endpoints(MODEL)), timeout=60)
    finally:
        kubectl("delete", "namespace", NAMESPACE, "--wait=false", "--ignore-not-found", check=False)
