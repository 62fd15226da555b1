"""Every other workload that runs an image built here starts as its pod says.

The gateway and the agent pools have tests of their own (test_gateway_image.py,
test_agent_images.py: they serve, register, answer calls, drain). Any other Deployment or
StatefulSet of the region whose image the suite built (a platform controller, say) is started here
without a test of its own: its container with the pod's constraints (voxplane/dev/pod_container.py),
its env and volumes from the rendered objects (Secret values are redacted in a render: each gets a
test value), in a network namespace of its own with only loopback (so it keeps the addresses and
ports it renders, and nothing of it is reachable from the host), and it must answer its liveness
probe, asked from inside. So a new image is
built and run by the suite as soon as a component builds it.

Not emulated: a Kubernetes API for a pod that mounts its service account's token; such a pod fails
here with that reason, until the suite gives it one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import pytest

from voxplane.dev.pod_container import write_volume_files
from voxplane.dev.ports import LOOPBACK

from .conftest import Built, Container

pytestmark = pytest.mark.integration

#: Workloads with tests of their own (by app.kubernetes.io/component).
COVERED = {"agent", "gateway"}


def other_workloads(built: Built) -> list[dict[str, Any]]:
    pushed = {f"{o.image.name}@{o.digest}" for o in built.outcomes}
    return [o for o in built.kubernetes if o["kind"] in ("Deployment", "StatefulSet")
            and o["metadata"].get("labels", {}).get("app.kubernetes.io/component") not in COVERED
            and any(c["image"] in pushed for c in o["spec"]["template"]["spec"]["containers"])]


def _object(built: Built, kind: str, namespace: str, name: str) -> dict[str, Any]:
    found = [o for o in built.kubernetes if o["kind"] == kind and o["metadata"]["name"] == name
             and o["metadata"].get("namespace") == namespace]
    assert found, f"the pod refers to {kind} {namespace}/{name}, which the render does not have"
    return found[0]


def _data(built: Built, kind: str, namespace: str, name: str) -> dict[str, str]:
    obj = _object(built, kind, namespace, name)
    if kind == "Secret":  # redacted in a render: a test value per key
        return {k: f"test-{name}-{k}" for k in {**obj.get("data", {}), **obj.get("stringData", {})}}
    return {k: str(v) for k, v in obj.get("data", {}).items()}


def pod_env(built: Built, namespace: str, pod_name: str, container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
            continue
        source = entry["valueFrom"]
        if "secretKeyRef" in source or "configMapKeyRef" in source:
            kind, ref = ("Secret", source["secretKeyRef"]) if "secretKeyRef" in source else ("ConfigMap", source["configMapKeyRef"])
            env[entry["name"]] = _data(built, kind, namespace, ref["name"])[ref["key"]]
        elif "fieldRef" in source:
            env[entry["name"]] = {"metadata.name": pod_name, "metadata.namespace": namespace,
                                  "status.podIP": LOOPBACK}[source["fieldRef"]["fieldPath"]]
        else:
            pytest.fail(f"{pod_name}: env {entry['name']}: {sorted(source)} is not given here")
    return env


def volume_files(built: Built, namespace: str, pod: dict[str, Any], workdir: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for volume in pod.get("volumes", []):
        spec = volume.get("projected") or volume
        sources = spec.get("sources") or [volume]
        if not any("configMap" in s or "secret" in s for s in sources):
            continue
        contents: dict[str, str] = {}
        for s in sources:
            if "configMap" in s:
                contents.update(_data(built, "ConfigMap", namespace, s["configMap"]["name"]))
            elif "secret" in s:
                contents.update(_data(built, "Secret", namespace, s["secret"].get("secretName") or s["secret"]["name"]))
        files[volume["name"]] = write_volume_files(workdir / volume["name"], volume, contents,
                                                   gid=(pod.get("securityContext") or {}).get("fsGroup"))
    return files


def _port(container: dict[str, Any], port: Any) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    (found,) = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    return int(found)


def start_as_rendered(built: Built, pod_containers: Callable[..., Container], obj: dict[str, Any], workdir: Path) -> None:
    """Each container of workload `obj` from the rendered objects alone, in a network namespace of
    its own (rendered ports and listen addresses as they are, nothing reachable from the host), until
    its liveness probe answers 200 from inside."""
    name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
    pod = obj["spec"]["template"]["spec"]
    assert pod.get("automountServiceAccountToken") is False, (
        f"{obj['kind']} {namespace}/{name} mounts its service account's token: it needs a Kubernetes API, "
        f"which this suite does not give a container yet")
    for container in pod["containers"]:
        probe = (container.get("livenessProbe") or {}).get("httpGet")
        assert probe, f"{name}/{container['name']}: no httpGet liveness probe to check it by"
        c = pod_containers(pod, container["name"], env=pod_env(built, namespace, name, container),
                           files=volume_files(built, namespace, pod, workdir / name), network="none")
        url = f"http://127.0.0.1:{_port(container, probe['port'])}{probe.get('path', '/')}"
        ask = f"import urllib.request as u; print(u.urlopen({url!r}, timeout=2).status)"
        deadline = time.monotonic() + 120
        while c._docker("exec", c.name, "python", "-c", ask).stdout.strip() != "200":
            assert c.running(), f"{name}/{container['name']} exited; its log:\n{c.log_tail()}"
            assert time.monotonic() < deadline, f"{name}: {url} not answering 200; its log:\n{c.log_tail()}"
            time.sleep(0.5)
        c.remove()


def test_every_other_pod_of_an_image_built_here_starts_and_answers_its_liveness_probe(
        built: Built, pod_containers: Callable[..., Container], tmp_path: Path) -> None:
    for obj in other_workloads(built):
        start_as_rendered(built, pod_containers, obj, tmp_path)


def test_a_pod_starts_from_its_rendered_objects_alone(
        built: Built, pod_containers: Callable[..., Container], tmp_path: Path) -> None:
    """What the test above does for a new image, done for the gateway (whose own tests do more):
    its config volume from the rendered ConfigMap and Secret, nothing rewritten."""
    start_as_rendered(built, pod_containers, built.deployment("livekit-gateway"), tmp_path)
