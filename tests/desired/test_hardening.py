"""Least privilege and bounded resources in every example region's render (issue #8, item 9):
non-root speech servers on read-only root filesystems, local disk bounded everywhere (containers,
emptyDirs, tenant quotas and defaults), a ServiceAccount without token per platform workload, the
Redis password off the command line, headless governing Services, and digest-pinned images."""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest

from voxplane.manifest.loader import load
from voxplane.deploy.render import render
from voxplane.dev.ports import free_port

from ..support.repo import REPO
from ..support.wait import wait_until
from ._helpers import REGIONS, region


@cache
def rendered(name: str) -> list[dict[str, Any]]:
    return render(name, REPO).kubernetes


def workloads(name: str) -> Iterator[dict[str, Any]]:
    for obj in rendered(name):
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            yield obj


def where(obj: dict[str, Any]) -> str:
    return f"{obj['kind']} {obj['metadata'].get('namespace')}/{obj['metadata']['name']}"


def find(name: str, kind: str, namespace: str, obj_name: str) -> dict[str, Any]:
    (obj,) = [o for o in rendered(name) if o["kind"] == kind and o["metadata"]["name"] == obj_name
              and o["metadata"].get("namespace") == namespace]
    return obj


# --- speech (and every) model server --------------------------------------------------------------


@pytest.mark.parametrize("name", REGIONS)
def test_model_servers_run_as_a_fixed_non_root_uid_on_a_read_only_root(name):
    """kokoro and whisper (and vLLM): runAsNonRoot with the model's uid, no privilege, read-only root
    filesystem; /tmp and the declared writable paths are scratch volumes, HOME points at /tmp."""
    r = region(name)
    for model_name, model in r.models.items():
        sts = find(name, "StatefulSet", "vox-inference", model_name)
        pod = sts["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["runAsGroup"] == model.run_as_user > 0
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True, model_name
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        for path in ["/tmp", *model.writable_paths]:
            assert "emptyDir" in volumes[mounts[path]], (model_name, path)
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["HOME"] == "/tmp" and env["XDG_CACHE_HOME"] == "/models/.cache"
    # The example regions run Kokoro-FastAPI as its image's own user, with its temp-files folder.
    kokoro = r.models["kokoro"]
    assert kokoro.run_as_user == 1001 and kokoro.writable_paths == ("/app/api/temp_files",)
    assert r.models["whisper"].run_as_user == 1000  # speaches' `ubuntu` user
    assert r.models["chat"].run_as_user == 10001  # vLLM's image has no user of its own: the default


@pytest.mark.parametrize("name", REGIONS)
def test_the_inference_namespace_enforces_restricted(name):
    ns = next(o for o in rendered(name) if o["kind"] == "Namespace" and o["metadata"]["name"] == "vox-inference")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# --- local disk ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REGIONS)
def test_every_container_requests_and_limits_ephemeral_storage(name):
    for obj in workloads(name):
        pod = obj["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            res = container.get("resources", {})
            request = res.get("requests", {}).get("ephemeral-storage")
            limit = res.get("limits", {}).get("ephemeral-storage")
            assert request and limit, f"{where(obj)} container {container['name']}: no ephemeral-storage request/limit"
            assert request == limit, f"{where(obj)}: disk request = limit (no overcommit of a node's disk)"


@pytest.mark.parametrize("name", REGIONS)
def test_every_emptydir_has_a_size_limit(name):
    for obj in workloads(name):
        for volume in obj["spec"]["template"]["spec"].get("volumes", []):
            if "emptyDir" in volume:
                assert volume["emptyDir"].get("sizeLimit"), f"{where(obj)} volume {volume['name']}: no sizeLimit"


@pytest.mark.parametrize("name", REGIONS)
def test_tenant_quotas_and_defaults_bound_ephemeral_storage(name):
    for tenant_name, tenant in region(name).tenants.items():
        ns = f"vox-t-{tenant_name}"
        hard = find(name, "ResourceQuota", ns, "tenant-quota")["spec"]["hard"]
        assert hard["requests.ephemeral-storage"] == hard["limits.ephemeral-storage"] == tenant.quotas.ephemeral_storage
        (limits,) = find(name, "LimitRange", ns, "tenant-defaults")["spec"]["limits"]
        assert limits["defaultRequest"]["ephemeral-storage"] and limits["default"]["ephemeral-storage"]


def test_an_ephemeral_storage_quota_below_the_pools_is_reported(manifest_tree):
    """Like CPU and memory: the quota must hold the pools at max_workers (echo: 10 workers x 2Gi)."""
    root = manifest_tree(files={"agents/echo.yaml": (REPO / "tests/manifests/base/agents/echo.yaml").read_text()
                                + "scaling: { max_workers: 10 }\n"})
    text = (root / "regions/test.yaml").read_text().replace(
        'acme: { quotas: { cpu: "64", memory: 128Gi } }', 'acme: { quotas: { cpu: "64", memory: 128Gi, ephemeral_storage: 10Gi } }')
    (root / "regions/test.yaml").write_text(text)
    problems = [str(p) for p in load((), root).problems]
    assert any("tenants.acme.quotas.ephemeral_storage: quota 10Gi is below what the agent pools of tenant 'acme' "
               "request at max_workers (20Gi" in p for p in problems), problems


def test_writable_paths_elsewhere_than_the_pods_own_mounts(manifest_tree):
    root = manifest_tree()
    text = (root / "regions/test.yaml").read_text().replace(
        "    model_id: kokoro\n", "    model_id: kokoro\n    writable_paths: [/app/api/temp_files, /tmp/kokoro]\n")
    (root / "regions/test.yaml").write_text(text)
    problems = [str(p) for p in load((), root).problems]
    assert [p for p in problems if "writable_paths" in p] == [
        f"regions/test.yaml:{_line(root, '/tmp/kokoro')}: models.voice.writable_paths[1]: /tmp/kokoro is under /tmp, "
        "which is writable already (the scratch volume); list only paths elsewhere in the image"]


def _line(root: Path, text: str) -> str:
    for number, line in enumerate((root / "regions/test.yaml").read_text().splitlines(), 1):
        if text in line:
            return f"{number}:{line.index(text) + 1}"
    raise AssertionError(text)


# --- identities ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REGIONS)
def test_sfu_sip_and_redis_run_under_their_own_service_account_without_a_token(name):
    r = region(name)
    expected = {("Deployment", "livekit"): "livekit"}
    if r.sip is not None:
        expected[("Deployment", "livekit-sip")] = "livekit-sip"
    if r.livekit.redis.mode == "in-cluster":
        expected[("StatefulSet", "livekit-redis")] = "livekit-redis"
    for (kind, obj_name), account in expected.items():
        pod = find(name, kind, "vox-system", obj_name)["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == account and pod["automountServiceAccountToken"] is False, obj_name
        sa = find(name, "ServiceAccount", "vox-system", account)
        assert sa["automountServiceAccountToken"] is False
    # Nothing of the platform mounts an API token but two: an LLM router finds its model's replicas
    # through the API, with a Role that reads pods in the inference namespace and nothing else; the
    # deletion-cost controller lists and patches pods in the tenant namespaces with an account of its own.
    for obj in workloads(name):
        pod = obj["spec"]["template"]["spec"]
        if obj["metadata"]["labels"]["app.kubernetes.io/component"] == "llm-router":
            account = pod["serviceAccountName"]
            role = find(name, "Role", "vox-inference", account)
            assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
            binding = find(name, "RoleBinding", "vox-inference", account)
            assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "vox-inference"}]
            assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account}
        elif (obj["metadata"]["namespace"], obj["metadata"]["name"]) == ("vox-system", "pod-deletion-cost"):
            assert pod["serviceAccountName"] == "pod-deletion-cost" and pod["automountServiceAccountToken"] is True
        else:
            assert pod.get("automountServiceAccountToken") is False, where(obj)


@pytest.mark.parametrize("name", REGIONS)
def test_every_statefulset_is_governed_by_a_headless_service_that_exists(name):
    for sts in (o for o in rendered(name) if o["kind"] == "StatefulSet"):
        ns = sts["metadata"]["namespace"]
        svc = find(name, "Service", ns, sts["spec"]["serviceName"])
        assert svc["spec"].get("clusterIP") == "None", f"{where(sts)}: serviceName {svc['metadata']['name']} is not headless"
        pod_labels = sts["spec"]["template"]["metadata"]["labels"]
        assert all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items()), where(sts)


# --- the Redis password ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [r for r in REGIONS if region(r).livekit.redis.mode == "in-cluster"])
def test_the_redis_password_is_on_no_command_line(name):
    """Neither a value nor a `$(VAR)` reference (which the kubelet expands into the argv that `ps`
    shows) in the command or args; it reaches Redis through a file the start script writes."""
    sts = find(name, "StatefulSet", "vox-system", "livekit-redis")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    argv = " ".join(container.get("command", []) + container.get("args", []))
    assert "$(" not in argv and "--requirepass" not in argv
    config = find(name, "ConfigMap", "vox-system", "livekit-redis-config")["data"]["redis.conf"]
    assert "include /run/redis/auth.conf" in config and "requirepass" not in config
    auth = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}["auth"]
    assert auth["emptyDir"]["medium"] == "Memory" and auth["emptyDir"]["sizeLimit"]


@pytest.mark.integration
def test_the_start_script_gives_redis_its_password_without_exposing_it(tmp_path):
    """The real redis-server (7.x) started by the container's own script, from the mounted password
    file: it requires the password, holds it in neither its argv nor its environment, and the
    readiness probe's command authenticates; quotes, backslashes and spaces survive."""
    from voxplane.desired.redis import AUTH_FILE, CONFIG_DIR, CONFIG_FILE, PASSWORD_FILE, PING_WITH_PASSWORD, START_SCRIPT, redis_conf

    assert shutil.which("redis-server"), "redis-server not on PATH (scripts/ensure-servers.sh installs it)"
    port = free_port()
    password = 'pa"ss \\word $HOME'
    (tmp_path / "password").write_text(password)
    moved = {AUTH_FILE: str(tmp_path / "auth.conf"), PASSWORD_FILE: str(tmp_path / "password"),
             f"{CONFIG_DIR}/{CONFIG_FILE}": str(tmp_path / CONFIG_FILE), "-p 6379": f"-p {port}"}
    conf = redis_conf(region("us-east")).replace("port 6379", f"port {port}\nbind 127.0.0.1").replace(
        "dir /data", f"dir {tmp_path}")
    script, probe = START_SCRIPT, PING_WITH_PASSWORD
    for old, new in moved.items():
        conf, script, probe = conf.replace(old, new), script.replace(old, new), probe.replace(old, new)
    (tmp_path / CONFIG_FILE).write_text(conf)
    env = {"PATH": os.environ["PATH"]}
    proc = subprocess.Popen(["sh", "-c", script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def cli(*args: str, **extra: str) -> str:
            return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                                  env={**env, **extra}, timeout=10).stdout.strip()

        wait_until("a passing readiness probe", lambda: subprocess.run(["sh", "-c", probe], env=env).returncode == 0,
                   timeout=10, interval=0.05, unless=lambda: None if proc.poll() is None else "redis exited")
        assert cli("ping", REDISCLI_AUTH=password) == "PONG"
        assert "NOAUTH" in cli("ping")
        assert "NOAUTH" in cli("ping", REDISCLI_AUTH="wrong")  # AUTH refused, so the ping is too
        # exec: the shell became redis-server, with the password in neither argv nor environment.
        redis = psutil.Process(proc.pid)
        cmdline, environ = " ".join(redis.cmdline()), " ".join(f"{k}={v}" for k, v in redis.environ().items())
        assert "redis-server" in cmdline and 'pa"ss' not in cmdline and 'pa"ss' not in environ
        assert oct((tmp_path / "auth.conf").stat().st_mode & 0o777) == "0o600"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("name", [r for r in REGIONS if region(r).livekit.redis.mode == "in-cluster"])
def test_redis_has_no_password_in_its_environment(name):
    """The password reaches the Redis container only as a file of its Secret, group-readable."""
    sts = find(name, "StatefulSet", "vox-system", "livekit-redis")
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "env" not in container and "envFrom" not in container
    password = {v["name"]: v for v in pod["volumes"]}["password"]["secret"]
    assert password == {"secretName": "livekit-redis-auth", "items": [{"key": "password", "path": "password"}],
                        "defaultMode": 0o440}


# --- images ----------------------------------------------------------------------------------------

DIGEST = "sha256:" + "0123456789abcdef" * 4


def test_platform_images_may_be_pinned_by_digest(manifest_tree):
    """Redis and model images take `name@sha256:…` and `name:tag@sha256:…`; livekit.digest and
    sip.digest pin the SFU and SIP images (`repo:version@digest`); a malformed digest is refused."""
    root = manifest_tree()
    text = (root / "regions/test.yaml").read_text()
    text = text.replace("livekit:\n", f"livekit:\n  digest: {DIGEST}\n  redis: {{ image: 'redis:7.4@{DIGEST}' }}\n", 1)
    text = text.replace("sip:\n", f"sip:\n  digest: {DIGEST}\n", 1)
    text = text.replace("image: vllm/vllm-openai:v0.11.0", f"image: vllm/vllm-openai@{DIGEST}")
    text = text.replace("image: ghcr.io/remsky/kokoro-fastapi-gpu:v0.2.4", f"image: ghcr.io/remsky/kokoro-fastapi-gpu:v0.2.4@{DIGEST}")
    (root / "regions/test.yaml").write_text(text)
    result = load((), root)
    assert result.problems == []
    objs = render("test", root).kubernetes
    images = {o["metadata"]["name"]: o["spec"]["template"]["spec"]["containers"][0]["image"]
              for o in objs if o["kind"] in ("Deployment", "StatefulSet") and o["metadata"]["namespace"] != "vox-t-acme"}
    assert images["livekit"] == f"livekit/livekit-server:v1.13.5@{DIGEST}"
    assert images["livekit-sip"] == f"livekit/sip:v1.11.0@{DIGEST}"
    assert images["livekit-redis"] == f"redis:7.4@{DIGEST}"
    assert images["chat"] == f"vllm/vllm-openai@{DIGEST}"
    assert images["voice"] == f"ghcr.io/remsky/kokoro-fastapi-gpu:v0.2.4@{DIGEST}"

    (root / "regions/test.yaml").write_text(text.replace(f"  digest: {DIGEST}\n", "  digest: sha256:abc\n", 1))
    problems = [str(p) for p in load((), root).problems]
    assert any("livekit.digest" in p for p in problems), problems


def test_a_model_cannot_take_another_models_headless_service_name(manifest_tree):
    root = manifest_tree()
    text = (root / "regions/test.yaml").read_text() + (
        "  chat-headless:\n    kind: stt\n    image: ghcr.io/speaches-ai/speaches:0.8.3-cuda\n    model_id: Systran/x\n    node_group: l4\n")
    (root / "regions/test.yaml").write_text(text)
    problems = [str(p) for p in load((), root).problems]
    assert any("models.chat-headless: model name 'chat-headless' is the name of model 'chat''s headless Service" in p
               for p in problems), problems
