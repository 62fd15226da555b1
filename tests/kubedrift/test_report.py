"""Attribution of object paths to manifest fields, `detect` on canned list answers, the renderers
and the combined report's exit code. No cluster: the integration tests run against a real one."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from voxplane.drift import combined
from voxplane.drift.kubernetes import report as kr
from voxplane.drift.attribution import Attribution
from voxplane.drift.kubernetes.compare import Keyed, format_path
from voxplane.drift.kubernetes.live import KindRef, LiveReader, NotServed, kind_ref

from ..support.repo import copy_manifests
from .conftest import REGION


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any, list[dict[str, Any]]]:
    from voxplane.manifest.loader import load
    from voxplane.deploy.render import render

    root = copy_manifests(tmp_path_factory.mktemp("kubedrift-unit") / "repo")
    project = load((), root).require_project()
    return root, project.regions[REGION], project.agents_in(REGION), render(REGION, root).kubernetes


def obj(objects: list[dict[str, Any]], kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    hits = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name
            and (namespace is None or o["metadata"].get("namespace") == namespace)]
    assert len(hits) == 1, (kind, name, namespace)
    return hits[0]


def line_of(root: Path, rel: str, text: str) -> int:
    return next(n for n, line in enumerate((root / rel).read_text().splitlines(), 1) if text in line)


AGENT = ("spec", "template", "spec", "containers", Keyed("name", "agent"))


def test_agent_fields(rendered: Any) -> None:
    root, region, agents, objects = rendered
    at = Attribution(region, agents)
    support = obj(objects, "Deployment", "support")
    env = at.field_origin(support, AGENT + ("env", Keyed("name", "LOG_LEVEL"), "value"))
    assert (env.file, env.field, env.line) == ("agents/support.yaml", "env.LOG_LEVEL",
                                               line_of(root, "agents/support.yaml", "LOG_LEVEL: info"))
    assert at.field_origin(support, AGENT + ("env", Keyed("name", "NEW"))).field == "env.NEW"
    assert at.field_origin(support, AGENT + ("env", Keyed("name", "VOXPLANE_LLM_API_KEY"))).field == \
        "inference.llm.provider.api_key"
    assert at.field_origin(support, AGENT + ("env", Keyed("name", "VOXPLANE_STT_MODEL"))).field == "inference.stt.model"
    for derived in ("VOXPLANE_SESSIONS_PER_WORKER", "VOXPLANE_IDLE_PROCESSES"):
        assert at.field_origin(support, AGENT + ("env", Keyed("name", derived), "value")).field == \
            "scaling.sessions_per_worker"
    cpu = at.field_origin(support, AGENT + ("resources", "requests", "cpu"))
    assert (cpu.field, cpu.line) == ("resources.cpu", line_of(root, "agents/support.yaml", "resources:"))
    assert at.field_origin(support, AGENT + ("resources", "limits", "memory")).field == "resources.memory"
    assert at.field_origin(support, AGENT + ("image",)).field == "code.build"
    assert at.field_origin(support, ("spec", "template", "spec", "terminationGracePeriodSeconds")).field == \
        "scaling.drain_timeout"
    scaled = obj(objects, "ScaledObject", "support")
    assert at.field_origin(scaled, ("spec", "maxReplicaCount")).field == "scaling.max_workers"
    assert at.field_origin(scaled, ("spec", "minReplicaCount")).field == "scaling.min_workers"
    # No rule: the top of the agent's file.
    pdb = at.field_origin(obj(objects, "PodDisruptionBudget", "support"), ("spec", "maxUnavailable"))
    assert (pdb.file, pdb.line, pdb.column, pdb.field) == ("agents/support.yaml", 1, 1, "(object)")


def test_region_fields(rendered: Any) -> None:
    root, region, agents, objects = rendered
    at = Attribution(region, agents)
    quota = at.field_origin(obj(objects, "ResourceQuota", "tenant-quota", "vox-t-northwind"), ("spec", "hard", "requests.cpu"))
    assert (quota.file, quota.field) == ("regions/local.yaml", "tenants.northwind.quotas.cpu")
    policy = at.object_origin(obj(objects, "NetworkPolicy", "default-deny", "vox-t-northwind"))
    assert (policy.field, policy.line) == ("tenants.northwind", line_of(root, "regions/local.yaml", "  northwind:"))
    chat = obj(objects, "ScaledObject", "chat")
    assert at.field_origin(chat, ("spec", "maxReplicaCount")).field == "models.chat.max_replicas"
    chat_sts = obj(objects, "StatefulSet", "chat")
    image = at.field_origin(chat_sts, ("spec", "template", "spec", "containers", Keyed("name", "server"), "image"))
    assert (image.field, image.line) == ("models.chat.image", line_of(root, "regions/local.yaml", "vllm/vllm-openai"))
    sfu = obj(objects, "Deployment", "livekit")
    assert at.field_origin(sfu, ("spec", "replicas")).field == "livekit.nodes"
    assert at.field_origin(sfu, ("spec", "template", "spec", "containers", Keyed("name", "livekit"), "resources",
                                 "requests", "cpu")).field == "livekit.resources.cpu"
    assert at.field_origin(obj(objects, "Deployment", "livekit-sip"), ("spec", "replicas")).field == "sip.replicas"
    assert at.object_origin(obj(objects, "Namespace", "vox-system")).field == "kubernetes.namespace_prefix"


class CannedReader(LiveReader):
    """Answers list calls from a dict of kind -> objects (what the API server would return)."""

    def __init__(self, owned: dict[str, list[dict[str, Any]]], unowned: dict[str, list[dict[str, Any]]],
                 not_served: set[str] = frozenset()):  # type: ignore[assignment]
        self.owned_items, self.unowned_items, self.not_served = owned, unowned, not_served
        self.calls = 0

    @property
    def server(self) -> str:
        return "https://cluster.example:6443"

    def list_objects(self, ref: KindRef, label_selector: str, *, metadata_only: bool = False) -> list[dict[str, Any]]:
        self.calls += 1
        if ref.kind in self.not_served:
            raise NotServed(str(ref))
        source = self.unowned_items if metadata_only else self.owned_items
        items = copy.deepcopy(source.get(ref.kind, []))
        for item in items:  # as LiveReader does: list items carry no kind of their own
            item["apiVersion"], item["kind"] = ref.api_version, ref.kind
        return items


def live_copy(objects: list[dict[str, Any]], region: Any, agents: Any) -> dict[str, list[dict[str, Any]]]:
    """The objects as the API server returns them; Secret values the builders know in plain
    (an API key name) base64-encoded, the others empty."""
    from voxplane.drift.kubernetes.secrets import no_lookup, resolve, secret_objects

    plain = {(s["metadata"]["namespace"], s["metadata"]["name"]): s["stringData"] for s in secret_objects(region, agents)}
    out: dict[str, list[dict[str, Any]]] = {}
    for o in objects:
        o = copy.deepcopy(o)
        if o["kind"] == "Secret":
            values = plain[(o["metadata"]["namespace"], o["metadata"]["name"])]
            o["data"] = {k: base64.b64encode((resolve(values[k], region, no_lookup)[0] or "").encode()).decode()
                         for k in o.pop("stringData")}
        out.setdefault(o["kind"], []).append(o)
    return out


def test_detect_on_canned_lists(rendered: Any) -> None:
    _, region, agents, objects = rendered
    owned = live_copy(objects, region, agents)
    assert kr.detect(region, agents, objects, CannedReader(owned, {})).drift is False
    next(o for o in owned["ScaledObject"] if o["metadata"]["name"] == "support")["spec"]["maxReplicaCount"] = 99
    owned["NetworkPolicy"] = [o for o in owned["NetworkPolicy"] if o["metadata"]["name"] != "default-deny"
                              or o["metadata"]["namespace"] != "vox-t-northwind"]
    owned["ConfigMap"].append({"metadata": {"name": "stale", "namespace": "vox-t-northwind",
                                            "annotations": {"voxplane.io/source": "agents/old.yaml"}}})
    unowned = {"ConfigMap": [
        {"metadata": {"name": "hand-made", "namespace": "vox-t-northwind"}},
        {"metadata": {"name": "kube-root-ca.crt", "namespace": "vox-t-northwind"}},
        {"metadata": {"name": "elsewhere", "namespace": "default"}},
        {"metadata": {"name": "child", "namespace": "vox-system", "ownerReferences": [{"kind": "X"}]}},
    ]}
    reader = CannedReader(owned, unowned, not_served={"PodMonitor"})
    rep = kr.detect(region, agents, objects, reader)
    assert [(c.kind, c.name, c.field, c.declared, c.live, c.source.field) for c in rep.changed] == [
        ("ScaledObject", "support", "spec.maxReplicaCount", 40, 99, "scaling.max_workers")]
    assert sorted(kr.names(rep.missing)) == ["NetworkPolicy vox-t-northwind/default-deny"] + sorted(
        f"PodMonitor {o['metadata']['namespace']}/{o['metadata']['name']}" for o in objects if o["kind"] == "PodMonitor")
    assert rep.notes == ["the cluster does not serve monitoring.coreos.com/v1 PodMonitor (is its CRD installed?)"]
    assert kr.names(rep.unexpected) == ["ConfigMap vox-t-northwind/stale"]
    assert kr.names(rep.unowned) == ["ConfigMap vox-t-northwind/hand-made"]
    # Secret values unknown (no VOXPLANE_SECRET_*): compared by key, listed as unchecked.
    assert rep.unchecked and all(u.kind == "Secret" for u in rep.unchecked)
    # Calls: one per kind listed, plus one metadata-only list per declared namespaced kind.
    assert rep.api_calls == reader.calls < len(objects)

    text = kr.to_text(rep)
    assert "agents/support.yaml:" in text and "spec.maxReplicaCount is 99 in the cluster, declared 40" in text
    assert text.splitlines()[-1].startswith("drift: region local on https://cluster.example:6443")
    data = json.loads(kr.to_json(rep))
    assert data["target"] == "kubernetes" and data["summary"]["unexpected"] == 1 and data["drift"] is True
    md = kr.to_markdown(rep)
    assert md.startswith("### Kubernetes drift — region `local`") and "| `agents/support.yaml:" in md


def test_built_image_digest_is_unchecked_and_the_repository_compared(rendered: Any) -> None:
    _, region, agents, objects = rendered
    desired = copy.deepcopy(objects)
    dep = obj(desired, "Deployment", "support")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    repo = container["image"].split(":")[0]
    container["image"] = f"{repo}@sha256:{'0' * 64}"  # what render shows when images are built
    owned = live_copy(desired, region, agents)
    live_dep = next(o for o in owned["Deployment"] if o["metadata"]["name"] == "support")
    live_dep["spec"]["template"]["spec"]["containers"][0]["image"] = f"{repo}@sha256:{'1' * 64}"
    rep = kr.detect(region, agents, desired, CannedReader(owned, {}))
    assert rep.changed == [] and [u.field for u in rep.unchecked if u.kind == "Deployment"] == [
        "spec.template.spec.containers[agent].image"]
    live_dep["spec"]["template"]["spec"]["containers"][0]["image"] = f"evil.example/x@sha256:{'1' * 64}"
    rep = kr.detect(region, agents, desired, CannedReader(owned, {}))
    assert [(c.field, c.source.field) for c in rep.changed] == [("spec.template.spec.containers[agent].image", "code.build")]


def test_the_gateway_image_the_stack_builds_is_unchecked_like_a_built_agent(rendered: Any) -> None:
    """A stack that builds images runs the gateway by its pushed digest, which render cannot know."""
    _, region, agents, objects = rendered
    desired = copy.deepcopy(objects)
    container = obj(desired, "Deployment", "livekit-gateway")["spec"]["template"]["spec"]["containers"][0]
    repo = container["image"].split(":")[0]
    container["image"] = f"{repo}@sha256:{'0' * 64}"
    owned = live_copy(desired, region, agents)
    live_dep = next(o for o in owned["Deployment"] if o["metadata"]["name"] == "livekit-gateway")
    live_dep["spec"]["template"]["spec"]["containers"][0]["image"] = f"{repo}@sha256:{'1' * 64}"
    rep = kr.detect(region, agents, desired, CannedReader(owned, {}))
    assert rep.changed == []
    (unchecked,) = [u for u in rep.unchecked if u.kind == "Deployment"]
    assert unchecked.field == "spec.template.spec.containers[gateway].image" and "voxplane/gateway" in unchecked.reason
    live_dep["spec"]["template"]["spec"]["containers"][0]["image"] = f"evil.example/x@sha256:{'1' * 64}"
    rep = kr.detect(region, agents, desired, CannedReader(owned, {}))
    assert [c.field for c in rep.changed] == ["spec.template.spec.containers[gateway].image"]


def test_kind_refs() -> None:
    assert kind_ref("v1", "ConfigMap", True).list_path == "/api/v1/configmaps"
    assert kind_ref("keda.sh/v1alpha1", "ScaledObject", True).list_path == "/apis/keda.sh/v1alpha1/scaledobjects"
    assert kind_ref("example.com/v1", "Policy", True).plural == "policies"
    assert kind_ref("example.com/v1", "Ingress", True).plural == "ingresses"


class Rep:
    def __init__(self, drift: bool):
        self.drift = drift


def test_combined_exit_code_and_sections() -> None:
    def result(target: str, drift: bool | None) -> combined.TargetResult:
        r = combined.TargetResult(target, renderers={"text": lambda rep: f"{target} lines",
                                                     "markdown": lambda rep: f"### {target}\n"},
                                  to_dict=lambda rep: {"target": target, "drift": rep.drift})
        if drift is None:
            r.error = [f"error: {target} unreachable"]
        else:
            r.report = Rep(drift)
        return r

    assert combined.exit_code([result("kubernetes", False), result("livekit", False)]) == 0
    assert combined.exit_code([result("kubernetes", True), result("livekit", False)]) == 2
    assert combined.exit_code([result("kubernetes", True), result("livekit", None)]) == 1
    both = [result("kubernetes", True), result("livekit", None)]
    text = combined.to_text("local", both)
    assert text.splitlines() == ["== kubernetes ==", "kubernetes lines", "", "== livekit ==",
                                 "error: livekit unreachable", "", "error: region local: kubernetes drift, livekit error"]
    data = json.loads(combined.to_json("local", both))
    assert data == {"region": "local", "drift": True, "error": True,
                    "targets": {"kubernetes": {"target": "kubernetes", "drift": True},
                                "livekit": {"error": ["error: livekit unreachable"]}}}
    assert "### kubernetes" in combined.to_markdown("local", both)


def test_secret_fingerprint_is_unchecked_unless_the_cluster_lacks_it(rendered: Any) -> None:
    """The pod template's fingerprint is keyed by the stack's root secret, which drift never reads:
    another value live is unchecked, not drift; a fingerprint removed live is drift."""
    _, region, agents, objects = rendered
    annotation = "voxplane.io/secret-fingerprint"
    assert annotation in obj(objects, "Deployment", "support")["spec"]["template"]["metadata"]["annotations"]
    owned = live_copy(objects, region, agents)
    live_dep = next(o for o in owned["Deployment"] if o["metadata"]["name"] == "support")
    live_dep["spec"]["template"]["metadata"]["annotations"][annotation] = "0123456789abcdef"
    rep = kr.detect(region, agents, objects, CannedReader(owned, {}))
    assert rep.changed == []
    field = format_path(("spec", "template", "metadata", "annotations", annotation))
    assert [u.field for u in rep.unchecked if u.name == "support"] == [field]
    del live_dep["spec"]["template"]["metadata"]["annotations"][annotation]
    rep = kr.detect(region, agents, objects, CannedReader(owned, {}))
    assert [c.field for c in rep.changed if c.name == "support"] == [field]
