"""Every example region applied by the real Pulumi engine (CLI, Python language host, Kubernetes
provider, dynamic provider) to a real API server with a real scheduler and kwok nodes, and its
LiveKit objects to a real livekit-server. The `deployment` fixture has run `pulumi up` already.

Tests run in file order within a region; the last ones edit manifests and destroy.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter

import pytest

from voxplane.desired.common import ADMIN_KEY, tenant_api_key
from voxplane.livekit.keys import derive_api_secret
from voxplane.livekit.client import LiveKitAdmin
from voxplane.livekit.desired import parse_owner
from voxplane.manifest.loader import load

from ..support.wait import wait_until
from .conftest import Deployment

pytestmark = [pytest.mark.integration, pytest.mark.engine]

#: Kinds voxplane renders, as kubectl names them.
KINDS = ("namespaces,deployments,statefulsets,services,serviceaccounts,configmaps,secrets,poddisruptionbudgets,networkpolicies,"
         "resourcequotas,limitranges,roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io,"
         "validatingadmissionpolicies.admissionregistration.k8s.io,"
         "validatingadmissionpolicybindings.admissionregistration.k8s.io,"
         "scaledobjects.keda.sh,podmonitors.monitoring.coreos.com,nodepools.karpenter.sh")


def rendered(dep: Deployment) -> list[dict]:
    from voxplane.deploy.render import render

    return render(dep.region, dep.root).kubernetes


def project(dep: Deployment):
    return load((), dep.root).require_project()


def live_keys(dep: Deployment) -> set[tuple[str, str, str]]:
    return {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in dep.objects(KINDS)}


def test_up_applied_every_rendered_object_and_the_server_admitted_it(deployment: Deployment):
    want = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in rendered(deployment)}
    missing = want - live_keys(deployment)
    assert not missing, f"rendered but not in the cluster: {sorted(missing)}"


def test_a_preview_right_after_up_has_no_changes(deployment: Deployment):
    proc = deployment.pulumi("preview", "--expect-no-changes", "--diff")
    assert proc.returncode == 0, f"perpetual diff:\n{proc.stdout[-4000:]}"


def test_workloads_roll_out_ready(deployment: Deployment):
    for kind in ("deployments", "statefulsets"):
        for obj in deployment.objects(kind):
            name = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
            status = obj.get("status", {})
            assert status.get("readyReplicas", 0) == obj["spec"]["replicas"], f"{kind} {name} not ready: {status}"
            if kind == "statefulsets":
                assert status.get("currentRevision") == status.get("updateRevision"), f"{name} rollout incomplete"


def _pods_with_nodes(dep: Deployment) -> list[tuple[dict, dict]]:
    nodes = {n["metadata"]["name"]: n for n in json.loads(dep.kubectl("get", "nodes", "-o", "json").stdout)["items"]}
    pods = dep.objects("pods")
    return [(p, nodes[p["spec"]["nodeName"]]) for p in pods if p["spec"].get("nodeName")]


def test_the_scheduler_places_each_component_on_its_own_pool(deployment: Deployment):
    proj = project(deployment)
    region = proj.regions[deployment.region]
    placed = _pods_with_nodes(deployment)
    pending = [p["metadata"]["name"] for p in deployment.objects("pods") if not p["spec"].get("nodeName")]
    assert not pending, f"pods the scheduler could not place: {pending}"
    sfu_nodes = Counter()
    for pod, node in placed:
        labels, node_labels = pod["metadata"]["labels"], node["metadata"]["labels"]
        component = labels.get("app.kubernetes.io/component")
        if component == "inference":
            model = region.models[labels["app.kubernetes.io/instance"]]
            assert node_labels.get("voxplane.io/gpu-group") == model.node_group, f"{pod['metadata']['name']} on {node['metadata']['name']}"
        elif component in ("sfu", "redis", "gateway", "controller", "recovery"):
            # Redis, the gateway (every tenant's key), the deletion-cost controller (it may patch
            # every tenant's pods) and the recovery controller (a key the server knows) beside the
            # SFU: never on a node that runs tenant code.
            for key, value in region.livekit.node_pool.selector.items():
                assert node_labels.get(key) == value, f"{pod['metadata']['name']} on {node['metadata']['name']}"
            if component == "sfu":
                sfu_nodes[node["metadata"]["name"]] += 1
        elif component == "agent":
            agent = next(a for a in proj.agents_in(region.name) if a.name == labels["voxplane.io/agent"]
                         and a.tenant == labels["voxplane.io/tenant"])
            tenant = region.tenants[agent.tenant]
            pool = tenant.node_pool if tenant.isolation == "dedicated-nodes" and tenant.node_pool else region.agents.node_pool
            assert pool is not None
            for key, value in pool.selector.items():
                assert node_labels.get(key) == value, f"{pod['metadata']['name']} on {node['metadata']['name']}"
        assert "nvidia.com/gpu" not in node["status"]["capacity"] or component == "inference", \
            f"{pod['metadata']['name']} ({component}) took a GPU node"
    assert sfu_nodes and max(sfu_nodes.values()) == 1, f"SFU pods per node: {dict(sfu_nodes)}"
    components = Counter(p["metadata"]["labels"].get("app.kubernetes.io/component") for p, _ in placed)
    assert components["gateway"] >= 2 and components["controller"] == 1, dict(components)
    assert components["recovery"] == 1, dict(components)
    if region.livekit.redis.mode != "external":
        assert components["redis"] == 1, dict(components)


def test_livekit_objects_are_on_the_server(deployment: Deployment):
    owned = _owned_livekit(deployment)
    agents = [a for a in project(deployment).agents_in(deployment.region) if a.telephony]
    assert sorted(o[1] for o in owned if o[0] == "trunk") == sorted(a.name for a in agents)
    assert sorted(o[1] for o in owned if o[0] == "rule") == sorted(a.name for a in agents)


def _owned_livekit(dep: Deployment) -> list[tuple[str, str]]:
    from voxplane.dev.stack import dev_root_secret

    secret = derive_api_secret(dev_root_secret(dep.region), dep.region, ADMIN_KEY)
    out = []
    with LiveKitAdmin(dep.livekit.http_url, ADMIN_KEY, secret) as client:
        for obj, role in [(t, "trunk") for t in client.list_trunks()] + [(r, "rule") for r in client.list_rules()]:
            owner, _ = parse_owner(obj.metadata)
            if owner is not None and owner.region == dep.region:
                out.append((role, owner.agent))
    return out


def test_stack_export_holds_no_plaintext_secret(deployment: Deployment):
    from voxplane.dev.stack import dev_secrets, needed_secret_keys

    exported = deployment.pulumi("stack", "export").stdout
    assert '"resources"' in exported
    values = dev_secrets(deployment.region, needed_secret_keys(deployment.root, deployment.region))
    region = project(deployment).regions[deployment.region]
    root = values["livekitRootSecret"]
    derived = {k: derive_api_secret(root, region.name, k) for k in [ADMIN_KEY] + [tenant_api_key(t) for t in region.tenants]}
    derived["redis"] = derive_api_secret(root, region.name, "redis")
    for name, value in {**values, **derived}.items():
        assert value not in exported, f"{name} in plain text in the stack export"


def test_out_of_band_edits_are_seen_by_refresh_and_repaired_by_up(deployment: Deployment):
    dep = deployment
    tenant = next(iter(project(dep).regions[dep.region].tenants))
    ns = f"{project(dep).regions[dep.region].kubernetes.namespace_prefix}-t-{tenant}"
    system = f"{project(dep).regions[dep.region].kubernetes.namespace_prefix}-system"
    before = json.loads(dep.kubectl("get", "configmap", "livekit-config", "-n", system, "-o", "json").stdout)["data"]
    replicas = json.loads(dep.kubectl("get", "deployment", "livekit", "-n", system, "-o", "json").stdout)["spec"]["replicas"]
    dep.kubectl("scale", "deployment", "livekit", "-n", system, f"--replicas={replicas + 2}")
    dep.kubectl("patch", "configmap", "livekit-config", "-n", system, "--type=merge", "-p",
                json.dumps({"data": {next(iter(before)): "edited: by hand\n"}}))
    dep.kubectl("delete", "networkpolicy", "default-deny", "-n", ns)

    proc = dep.pulumi("refresh", "--preview-only", "--expect-no-changes", "--diff")
    assert proc.returncode != 0, "refresh saw no drift"
    for what in ("livekit-config", "default-deny", "livekit"):
        assert what in proc.stdout, f"{what} not in the refresh preview:\n{proc.stdout[-3000:]}"

    dep.up("--refresh")
    after = json.loads(dep.kubectl("get", "configmap", "livekit-config", "-n", system, "-o", "json").stdout)["data"]
    assert after == before
    assert dep.kubectl("get", "networkpolicy", "default-deny", "-n", ns, check=False).returncode == 0
    live = json.loads(dep.kubectl("get", "deployment", "livekit", "-n", system, "-o", "json").stdout)["spec"]["replicas"]
    assert live == replicas
    proc = dep.pulumi("preview", "--expect-no-changes")
    assert proc.returncode == 0, proc.stdout[-3000:]


def _steps(preview: dict) -> dict[str, str]:
    """urn -> op for every step that changes something."""
    return {s["urn"]: s["op"] for s in preview.get("steps", []) if s["op"] not in ("same", "read")}


def test_a_manifest_edit_previews_as_exactly_the_objects_it_touches(deployment: Deployment):
    dep = deployment
    agent = next(a for a in project(dep).agents_in(dep.region))
    path = dep.root / agent.source.file  # type: ignore[union-attr]
    text = path.read_text()
    old = f"max_workers: {agent.scaling.max_workers}"
    assert old in text
    # Down, not up: a larger pool could exceed the tenant's quota, which validation refuses.
    path.write_text(text.replace(old, f"max_workers: {agent.scaling.max_workers - 1}", 1))
    changed = _steps(dep.preview_json())
    assert len(changed) == 1, f"one field, one object; got {changed}"
    (urn, op), = changed.items()
    assert op == "update" and "ScaledObject" in urn and agent.name in urn, changed
    dep.up()
    so = dep.objects("scaledobjects.keda.sh", f"voxplane.io/agent={agent.name},voxplane.io/tenant={agent.tenant}")
    assert [o["spec"]["maxReplicaCount"] for o in so] == [agent.scaling.max_workers - 1]


def test_a_number_edit_previews_as_exactly_its_trunk(deployment: Deployment):
    dep = deployment
    agent = next(a for a in project(dep).agents_in(dep.region) if a.telephony)
    path = dep.root / agent.source.file  # type: ignore[union-attr]
    old_number = agent.telephony.numbers[0]  # type: ignore[union-attr]
    new_number = old_number[:-4] + ("0000" if not old_number.endswith("0000") else "0001")
    text = path.read_text()
    assert f'"{old_number}"' in text
    path.write_text(text.replace(f'"{old_number}"', f'"{new_number}"', 1))
    changed = _steps(dep.preview_json())
    assert len(changed) == 1, f"one number, one trunk; got {changed}"
    (urn, op), = changed.items()
    assert op == "update" and "SIPInboundTrunk" in urn and agent.name in urn, changed
    dep.up()
    from voxplane.dev.stack import dev_root_secret

    secret = derive_api_secret(dev_root_secret(dep.region), dep.region, ADMIN_KEY)
    with LiveKitAdmin(dep.livekit.http_url, ADMIN_KEY, secret) as client:
        numbers = {n for t in client.list_trunks() if t.name.endswith(f"-{agent.name}") for n in t.numbers}
    assert new_number in numbers and old_number not in numbers


def test_a_model_edit_previews_as_exactly_its_autoscaler(deployment: Deployment):
    """A model's max_replicas is the ScaledObject's bound; the StatefulSet's replicas belong to KEDA."""
    dep = deployment
    region = project(dep).regions[dep.region]
    # Not an LLM at one replica: a second one also brings its router (desired/llm_router.py).
    model = next(m for m in region.models.values() if m.kind != "llm")
    path = dep.root / region.source.file  # type: ignore[union-attr]
    text = path.read_text()
    block = text.index(f"\n  {model.name}:\n")
    old, new = f"max_replicas: {model.max_replicas}", f"max_replicas: {model.max_replicas + 1}"
    if old in text[block:]:
        at = text.index(old, block)
        text = text[:at] + new + text[at + len(old):]
    else:  # the default: state it under the model's kind line
        at = text.index("kind:", block)
        eol = text.index("\n", at)
        text = text[:eol + 1] + f"    {new}\n" + text[eol + 1:]
    path.write_text(text)
    changed = _steps(dep.preview_json())
    assert len(changed) == 1, f"one field, one object; got {changed}"
    (urn, op), = changed.items()
    assert op == "update" and "ScaledObject" in urn and model.name in urn, changed
    dep.up()
    (so,) = [o for o in dep.objects("scaledobjects.keda.sh") if o["metadata"]["name"] == model.name]
    assert so["spec"]["maxReplicaCount"] == model.max_replicas + 1


def test_an_agent_change_rolls_with_max_unavailable_zero(deployment: Deployment):
    dep = deployment
    agent = next(a for a in project(dep).agents_in(dep.region))
    sel = f"voxplane.io/agent={agent.name},voxplane.io/tenant={agent.tenant}"
    (deploy,) = dep.objects("deployments", sel)
    assert deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    generation = deploy["metadata"]["generation"]
    path = dep.root / agent.source.file  # type: ignore[union-attr]
    text = path.read_text()
    assert "\nenv:\n" in text
    path.write_text(text.replace("\nenv:\n", "\nenv:\n  ROLLOUT_CHECK: \"1\"\n", 1))
    # Watch available replicas while the engine rolls the Deployment: never below the desired count.
    ns, name = deploy["metadata"]["namespace"], deploy["metadata"]["name"]
    # Comma-separated: a field the API server leaves out (no updated replicas yet) prints as "".
    fields = ("{.spec.replicas},{.status.availableReplicas},{.status.updatedReplicas},{.metadata.generation},"
              "{.status.observedGeneration}")
    watch = subprocess.Popen([str(dep.bins / "kubectl"), "get", "deployment", name, "-n", ns, "--watch", "-o",
                              f"jsonpath={fields}{{\"\\n\"}}"],
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "KUBECONFIG": str(dep.kubeconfig)})
    assert watch.stdout is not None
    try:
        # A watch prints the object as it is first: once that line is here, it sees every change.
        events = [watch.stdout.readline().rstrip("\n").split(",")]
        assert len(events[0]) == 5 and events[0][3] == str(generation), events
        dep.up()
        (after,) = dep.objects("deployments", sel)
        spec, status = after["spec"], after["status"]
        done = ["" if v is None else str(v) for v in (spec["replicas"], status.get("availableReplicas"),
                status.get("updatedReplicas"), after["metadata"]["generation"], status.get("observedGeneration"))]
        # Every change up to the rolled-out state the engine waited for (its line can come after up returns).
        while events[-1] != done and (line := watch.stdout.readline()):
            events.append(line.rstrip("\n").split(","))
    finally:
        watch.terminate()
        watch.communicate(timeout=10)
    assert after["metadata"]["generation"] > generation, "the pod template did not change"
    assert status.get("updatedReplicas") == spec["replicas"] == status.get("readyReplicas")
    assert events[-1] == done, f"the watch ended before the rolled-out state: {events}"
    for desired, available, *_ in events:
        assert int(available or 0) >= int(desired), f"availability dropped during the rollout: {events}"


def test_destroy_leaves_no_voxplane_object(deployment: Deployment):
    dep = deployment
    proc = dep.pulumi("destroy", "--yes", "--skip-preview")
    assert proc.returncode == 0, proc.stdout[-3000:]
    # Namespaces finalize asynchronously (the namespace controller empties them).
    wait_until("empty cluster after destroy", lambda: not live_keys(dep), timeout=90, interval=1,
               details=lambda: f"left: {sorted(live_keys(dep))}")
    assert _owned_livekit(dep) == []
