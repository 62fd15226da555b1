"""The router in front of an LLM with more than one replica (voxplane/desired/llm_router.py): which
models get one, its objects, the traffic it changes (agents reach the router, the router the
replicas) and the LLMRouter component under Pulumi mocks. What vllm-router does with these
arguments is tests/upstream/test_llm_router.py's."""

from __future__ import annotations

import dataclasses
from typing import Any

import pulumi
import pytest

import voxplane.llm_router
from voxplane.components.images import build_context_hash
from voxplane.components.llm_router import LLMRouter, LLMRouterArgs
from voxplane.components.secrets import SecretResolver
from voxplane.desired.common import model_base_url
from voxplane.desired.inference import build_model, model_clients, model_labels
from voxplane.desired.llm_router import (
    API_SERVER_PORTS,
    METRICS_PORT,
    SESSION_TTL_SECONDS,
    build_router,
    has_router,
    router_labels,
)
from voxplane.desired.tenant import build_tenant

from ._helpers import desired, project, region, validate_strict

IMAGE = "registry.example.com/vox/voxplane-llm-router:tag"


def _router(region_name: str, model_name: str = "chat") -> dict[str, dict[str, Any]]:
    r = region(region_name)
    model = r.models[model_name]
    agents = project().agents_in(region_name)
    objs = build_router(r, model, model_labels(r, model), model_clients(model, agents), image=IMAGE)
    return {o["kind"]: o for o in objs}


def test_an_llm_with_several_replicas_gets_a_router_and_nothing_else_does():
    for name in ("local", "us-east", "eu-west"):
        for model in region(name).models.values():
            assert has_router(model) == (model.kind == "llm" and model.max_replicas > 1), (name, model.name)
    chat = region("us-east").models["chat"]
    assert not has_router(dataclasses.replace(chat, max_replicas=1))
    assert has_router(chat) and not has_router(region("local").models["chat"])


@pytest.mark.parametrize("region_name", ["us-east", "eu-west"])
def test_the_routers_objects_are_valid_and_named_after_the_model(region_name):
    objs = _router(region_name)
    assert sorted(objs) == ["Deployment", "NetworkPolicy", "PodDisruptionBudget", "PodMonitor", "Role", "RoleBinding",
                            "Service", "ServiceAccount"]
    for obj in objs.values():
        assert obj["metadata"]["name"] == "chat-router" and obj["metadata"]["namespace"] == "vox-inference"
        if obj["kind"] != "PodMonitor":
            validate_strict(obj)


def test_the_router_runs_restricted_on_its_own_service_account_with_the_session_ttl():
    objs = _router("us-east")
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["serviceAccountName"] == "chat-router" and pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["command"] == ["vllm-router"] and container["image"] == IMAGE
    assert {"name": "VLLM_ROUTER_SLL_SESSION_EXPIRATION_IN_S", "value": str(SESSION_TTL_SECONDS)} in container["env"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "metrics": METRICS_PORT}
    assert objs["PodMonitor"]["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    assert objs["Deployment"]["spec"]["replicas"] == 2 and objs["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1


def test_its_service_keeps_a_client_on_one_router_pod():
    """The session table is each router pod's own: an agent pod's calls meet the same one."""
    svc = _router("us-east")["Service"]
    assert svc["spec"]["sessionAffinity"] == "ClientIP"
    assert svc["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"] >= 3600
    assert svc["spec"]["selector"] == {k: v for k, v in router_labels(region("us-east"), region("us-east").models["chat"]).items()
                                       if k in svc["spec"]["selector"]}


def _peers(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return rule.get("from") or rule.get("to") or []


def test_agents_reach_the_router_and_only_the_router_reaches_the_replicas():
    r = region("us-east")
    chat = r.models["chat"]
    router_selector = {k: v for k, v in router_labels(r, chat).items() if k.startswith("app.kubernetes.io/") and k in
                       ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/part-of")}
    model_np = next(o for o in build_model(r, chat, project().agents_in("us-east"), preflight_image="") if o["kind"] == "NetworkPolicy")
    [clients, prometheus] = model_np["spec"]["ingress"]
    assert [p["podSelector"]["matchLabels"] for p in _peers(clients)] == [router_selector]
    assert clients["ports"] == [{"protocol": "TCP", "port": chat.port}]
    router_np = _router("us-east")["NetworkPolicy"]
    [agents_in, prometheus_in] = router_np["spec"]["ingress"]
    agents = model_clients(chat, project().agents_in("us-east"))
    assert {p["podSelector"]["matchLabels"]["voxplane.io/agent"] for p in _peers(agents_in)} == {a.name for a in agents}
    assert prometheus_in["ports"] == [{"protocol": "TCP", "port": METRICS_PORT}]
    [dns, replicas, api] = router_np["spec"]["egress"]
    assert replicas["ports"] == [{"protocol": "TCP", "port": chat.port}]
    assert _peers(replicas)[0]["podSelector"]["matchLabels"].items() <= model_labels(r, chat).items()
    assert sorted(p["port"] for p in api["ports"]) == sorted(API_SERVER_PORTS)
    for tenant in r.tenants:
        objs = build_tenant(r, r.tenants[tenant], [a for a in project().agents_in("us-east") if a.tenant == tenant])
        platform = next(o for o in objs if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "allow-platform")
        selectors = [p["podSelector"]["matchLabels"] for rule in platform["spec"]["egress"] for p in _peers(rule)
                     if "podSelector" in p]
        if any(a.tenant == tenant for a in agents):
            assert router_selector in selectors
        assert {k: v for k, v in model_labels(r, chat).items() if k in router_selector} not in selectors
    assert model_base_url(r, "chat") == "http://chat-router.vox-inference.svc.cluster.local:8000/v1"


def test_build_region_gives_each_router_its_own_part():
    """The routers are a part of `RegionObjects` of their own, by model name (the LLMRouter
    component registers it), and only the models that have one appear there."""
    for name in ("local", "us-east", "eu-west"):
        r = region(name)
        objects = desired(name)
        assert sorted(objects.routers) == sorted(m for m, model in r.models.items() if has_router(model))
        for m, part in objects.routers.items():
            assert {o["metadata"]["name"] for o in part} == {f"{m}-router"}
            assert all(any(o is p for p in objects.all()) for o in part)
    assert desired("us-east").routers and not desired("local").routers


@pulumi.runtime.test
def test_the_component_registers_the_routers_objects_with_the_image_it_names(mocked):
    """LLMRouter for us-east chat registers its part of `build_region` and puts the router
    image (the registry's, tagged with voxplane/llm_router's content hash) in the Deployment."""
    r = region("us-east")
    router = LLMRouter("us-east-model-chat-router", LLMRouterArgs(
        region=r, model=r.models["chat"], objects=desired("us-east").routers["chat"],
        secrets=SecretResolver(r.name, []), image_registry="registry.example.com/vox", build_images=False))

    def check(args: list) -> None:
        image = args[0]
        assert image == "registry.example.com/vox/voxplane-llm-router:" + build_context_hash(voxplane.llm_router.FOLDER)
        assert sorted(x.typ for x in mocked.resources if x.custom) == sorted([
            "kubernetes:core/v1:ServiceAccount",
            "kubernetes:rbac.authorization.k8s.io/v1:Role",
            "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding",
            "kubernetes:apps/v1:Deployment",
            "kubernetes:core/v1:Service",
            "kubernetes:policy/v1:PodDisruptionBudget",
            "kubernetes:monitoring.coreos.com/v1:PodMonitor",
            "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        ])
        (dep,) = [x for x in mocked.resources if x.typ == "kubernetes:apps/v1:Deployment"]
        assert dep.name == "us-east-model-chat-router-deployment-chat-router"
        assert dep.inputs["spec"]["template"]["spec"]["containers"][0]["image"] == image
        assert mocked.one("voxplane:inference:LLMRouter").custom is False

    # Resolves once every child is registered.
    return pulumi.Output.all(router.image, *[c.urn for c in router.children.values()]).apply(check)
