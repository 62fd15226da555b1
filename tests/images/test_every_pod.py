"""Every other workload that runs an image built here starts as its pod says.

The gateway and the agent pools have tests of their own (test_gateway_image.py,
test_agent_images.py: they serve, register, answer calls, drain). Any other Deployment or
StatefulSet of any region whose image the suite built (a platform controller, the LLM router that
only a region with a multi-replica model renders) is started here without a test of its own, once
per image: its container with the pod's constraints (voxplane/dev/pod_container.py), its env and
volumes from the rendered objects (Secret values are redacted in a render: each gets a test
value), in a network namespace of its own with only loopback (so it keeps the addresses and ports
it renders, and nothing of it is reachable from the host), and it must answer its liveness probe,
asked from inside. So a new image is built and run by the suite as soon as a component builds it.

A pod that mounts its service account's token gets what the ServiceAccount admission plugin and
the kubelet give it (the token volume at /var/run/secrets/kubernetes.io/serviceaccount: a test
token, a CA made for the test, the namespace; KUBERNETES_SERVICE_HOST and _PORT), with no API
behind that address: the image must start with the pod's constraints and stay alive through an
API it cannot reach (a pod whose liveness followed the API's would be restarted through every API
outage). What it does with a real API is its own tests' (tests/controllers run the controller
against the dev cluster's API server; tests/test_llm_router.py the router against real vLLM).

Every init container of an image built here runs as its pod says, before nothing: the GPU
preflight, the one there is, cannot find an NVIDIA driver on this machine (NVML needs one: a GPU
node's), so its check here is its one-line verdict, exit 1 and the same verdict in the
termination log the kubelet mounts; a GPU machine runs it green (scripts/gpu-check.sh).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from voxplane.dev.pod_container import write_volume_files
from voxplane.dev.ports import LOOPBACK
from voxplane.gpu_preflight.check import no_gpu

from .conftest import REGION, Built, Container

pytestmark = pytest.mark.integration

#: Workloads with tests of their own (by app.kubernetes.io/component).
COVERED = {"agent", "gateway"}


#: Where the ServiceAccount admission plugin mounts the token volume.
SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def _regions(built: Built) -> list[str]:
    """`local` first: a workload every region renders is run as `local` renders it."""
    return sorted(built.renders, key=lambda r: (r != REGION, r))


def _pods(built: Built) -> list[tuple[list[dict[str, Any]], dict[str, Any]]]:
    """(the region's objects, a Deployment or StatefulSet) of every region."""
    return [(built.renders[r], o) for r in _regions(built) for o in built.renders[r]
            if o["kind"] in ("Deployment", "StatefulSet")]


def other_workloads(built: Built) -> list[tuple[list[dict[str, Any]], dict[str, Any]]]:
    """Each workload without a test of its own whose containers run images pushed here, once per
    set of images (the first region's that renders it)."""
    pushed = {f"{o.image.name}@{o.digest}" for o in built.outcomes}
    seen: set[tuple[str, ...]] = set()
    out = []
    for objects, o in _pods(built):
        images = tuple(c["image"] for c in o["spec"]["template"]["spec"]["containers"])
        if (o["metadata"].get("labels", {}).get("app.kubernetes.io/component") not in COVERED
                and any(i in pushed for i in images) and images not in seen):
            seen.add(images)
            out.append((objects, o))
    return out


def _object(objects: list[dict[str, Any]], kind: str, namespace: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name
             and o["metadata"].get("namespace") == namespace]
    assert found, f"the pod refers to {kind} {namespace}/{name}, which the render does not have"
    return found[0]


def _data(objects: list[dict[str, Any]], kind: str, namespace: str, name: str) -> dict[str, str]:
    obj = _object(objects, kind, namespace, name)
    if kind == "Secret":  # redacted in a render: a test value per key
        return {k: f"test-{name}-{k}" for k in {**obj.get("data", {}), **obj.get("stringData", {})}}
    return {k: str(v) for k, v in obj.get("data", {}).items()}


def pod_env(objects: list[dict[str, Any]], namespace: str, pod_name: str, container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
            continue
        source = entry["valueFrom"]
        if "secretKeyRef" in source or "configMapKeyRef" in source:
            kind, ref = ("Secret", source["secretKeyRef"]) if "secretKeyRef" in source else ("ConfigMap", source["configMapKeyRef"])
            env[entry["name"]] = _data(objects, kind, namespace, ref["name"])[ref["key"]]
        elif "fieldRef" in source:
            env[entry["name"]] = {"metadata.name": pod_name, "metadata.namespace": namespace,
                                  "status.podIP": LOOPBACK}[source["fieldRef"]["fieldPath"]]
        else:
            pytest.fail(f"{pod_name}: env {entry['name']}: {sorted(source)} is not given here")
    return env


def volume_files(objects: list[dict[str, Any]], namespace: str, pod: dict[str, Any], workdir: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for volume in pod.get("volumes", []):
        spec = volume.get("projected") or volume
        sources = spec.get("sources") or [volume]
        if not any("configMap" in s or "secret" in s for s in sources):
            continue
        contents: dict[str, str] = {}
        for s in sources:
            if "configMap" in s:
                contents.update(_data(objects, "ConfigMap", namespace, s["configMap"]["name"]))
            elif "secret" in s:
                contents.update(_data(objects, "Secret", namespace, s["secret"].get("secretName") or s["secret"]["name"]))
        files[volume["name"]] = write_volume_files(workdir / volume["name"], volume, contents,
                                                   gid=(pod.get("securityContext") or {}).get("fsGroup"))
    return files


def _port(container: dict[str, Any], port: Any) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    (found,) = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    return int(found)


def with_service_account(pod: dict[str, Any], namespace: str, workdir: Path) -> tuple[dict[str, Any], dict[str, Path],
                                                                                     dict[str, str]]:
    """`pod` as the ServiceAccount admission plugin leaves it (its token volume mounted into every
    container), the volume's files as the kubelet writes them, and the env the kubelet adds; the
    API's address is loopback's port 443, where nothing listens in the container's namespace."""
    volume = {"name": "kube-api-access", "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}
    mount = {"name": volume["name"], "mountPath": SERVICE_ACCOUNT, "readOnly": True}
    pod = {**pod, "volumes": [*pod.get("volumes", []), volume],
           "containers": [{**c, "volumeMounts": [*c.get("volumeMounts", []), mount]} for c in pod["containers"]]}
    folder = workdir / volume["name"]
    folder.mkdir(parents=True)
    key = folder / ".ca.key"  # the CA's key stays outside the volume's files
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=voxplane-test-kubernetes-ca", "-keyout", str(key), "-out", str(folder / "ca.crt")],
                   check=True, capture_output=True)
    key.unlink()
    (folder / "token").write_text("test-service-account-token")
    (folder / "namespace").write_text(namespace)
    gid = (pod.get("securityContext") or {}).get("fsGroup")
    for path in folder.iterdir():
        path.chmod(0o644)
        if gid is not None:
            os.chown(path, -1, gid)
    return pod, {volume["name"]: folder}, {"KUBERNETES_SERVICE_HOST": LOOPBACK, "KUBERNETES_SERVICE_PORT": "443"}


def start_as_rendered(objects: list[dict[str, Any]], pod_containers: Callable[..., Container], obj: dict[str, Any],
                      workdir: Path) -> None:
    """Each container of workload `obj` from the rendered objects alone, in a network namespace of
    its own (rendered ports and listen addresses as they are, nothing reachable from the host), until
    its liveness probe answers 200 from inside."""
    name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
    pod = obj["spec"]["template"]["spec"]
    files = volume_files(objects, namespace, pod, workdir / name)
    kubelet_env: dict[str, str] = {}
    if pod.get("automountServiceAccountToken", True):
        pod, token, kubelet_env = with_service_account(pod, namespace, workdir / name)
        files.update(token)
    for container in pod["containers"]:
        probe = (container.get("livenessProbe") or {}).get("httpGet")
        assert probe, f"{name}/{container['name']}: no httpGet liveness probe to check it by"
        c = pod_containers(pod, container["name"], env={**kubelet_env, **pod_env(objects, namespace, name, container)},
                           files=files, network="none")
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
    workloads = other_workloads(built)
    # What that is today: the deletion-cost controller (every region), the LLM router (us-east's).
    names = {o["metadata"]["name"] for _, o in workloads}
    assert {"pod-deletion-cost", "chat-router"} <= names, names
    for objects, obj in workloads:
        start_as_rendered(objects, pod_containers, obj, tmp_path)


def test_a_pod_starts_from_its_rendered_objects_alone(
        built: Built, pod_containers: Callable[..., Container], tmp_path: Path) -> None:
    """What the test above does for a new image, done for the gateway (whose own tests do more):
    its config volume from the rendered ConfigMap and Secret, nothing rewritten."""
    start_as_rendered(built.kubernetes, pod_containers, built.deployment("livekit-gateway"), tmp_path)


def test_every_init_container_of_an_image_built_here_runs_as_its_pod_says(
        built: Built, pod_containers: Callable[..., Container], tmp_path: Path) -> None:
    """Each init container (once per image) runs to its end with the pod's constraints and the
    termination log the kubelet mounts. The GPU preflight finds no NVIDIA driver here: exit 1, its
    one line, that verdict in the termination log (never a traceback, never a write refused by the
    read-only root). Any other init container must exit 0."""
    pushed = {f"{o.image.name}@{o.digest}" for o in built.outcomes}
    seen: set[str] = set()
    ran = []
    for objects, obj in _pods(built):
        pod, namespace = obj["spec"]["template"]["spec"], obj["metadata"]["namespace"]
        for spec in pod.get("initContainers", []):
            if spec["image"] not in pushed or spec["image"] in seen:
                continue
            seen.add(spec["image"])
            log = tmp_path / f"{obj['metadata']['name']}-{spec['name']}.termination-log"
            log.touch()
            log.chmod(0o666)  # the kubelet's file: writable by the container's user
            c = pod_containers(pod, spec["name"], env=pod_env(objects, namespace, obj["metadata"]["name"], spec),
                               files=volume_files(objects, namespace, pod, tmp_path / obj["metadata"]["name"]),
                               network="none", termination_log=log)
            code = c.wait_exit(120)
            ran.append(spec["name"])
            if spec["name"] == "gpu-preflight":
                line = no_gpu("NVMLError_LibraryNotFound", "NVML Shared Library Not Found").line
                assert (code, c.logs().splitlines()) == (1, [line]), c.log_tail()
                assert json.loads(log.read_text()) == {"ok": False, "line": line, "problems": [
                    "NVMLError_LibraryNotFound: NVML Shared Library Not Found"]}
            else:
                assert code == 0, f"{obj['metadata']['name']}/{spec['name']} exited {code}; its log:\n{c.log_tail()}"
            c.remove()
    assert "gpu-preflight" in ran, ran
