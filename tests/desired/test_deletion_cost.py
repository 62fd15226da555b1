"""The deletion-cost controller's objects (voxplane/desired/deletion_cost.py), built from every
example region: where it runs, what it may do, what it reads, and that its config is the render's."""

from __future__ import annotations

import dataclasses
import urllib.parse
import json

import pytest

from voxplane.controllers.deletion_cost.config import Config
from voxplane.desired.agent_pool import build_agent_pool
from voxplane.desired.deletion_cost import build_deletion_cost
from voxplane.desired.network import monitoring_namespace

from ._helpers import REGIONS, plain, project, region, validate_strict

IMAGE = "registry.example/voxplane/voxplane-deletion-cost@sha256:" + "c" * 64


def built(name: str) -> list[dict]:
    return build_deletion_cost(region(name), project().agents_in(name), image=IMAGE)


def one(objects: list[dict], kind: str, namespace: str | None = None) -> dict:
    (obj,) = [o for o in objects if o["kind"] == kind and (namespace is None or o["metadata"]["namespace"] == namespace)]
    return obj


@pytest.mark.parametrize("name", REGIONS)
def test_every_object_is_valid_and_labelled(name: str) -> None:
    for obj in built(name):
        validate_strict(plain(obj))
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "voxplane" and labels["app.kubernetes.io/part-of"] == name
        assert labels["app.kubernetes.io/name"] == "pod-deletion-cost"
        assert labels["app.kubernetes.io/component"] == "controller"
        assert obj["metadata"]["annotations"]["voxplane.io/source"] == f"regions/{name}.yaml"


@pytest.mark.parametrize("name", REGIONS)
def test_it_runs_on_the_media_pool_in_the_system_namespace_never_beside_tenant_code(name: str) -> None:
    r = region(name)
    dep = one(built(name), "Deployment")
    assert dep["metadata"]["namespace"] == f"{r.kubernetes.namespace_prefix}-system"
    pod = dep["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == dict(r.livekit.node_pool.selector)
    assert pod["nodeSelector"] != dict(r.agents.node_pool.selector)
    for tenant in r.tenants.values():
        if tenant.node_pool is not None:
            assert pod["nodeSelector"] != dict(tenant.node_pool.selector)
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    # One writer at a time: a rollout stops the old one before the new one starts.
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize("name", REGIONS)
def test_its_account_may_list_and_patch_pods_in_the_tenant_namespaces_with_pools_and_nothing_else(name: str) -> None:
    objects = built(name)
    system = f"{region(name).kubernetes.namespace_prefix}-system"
    account = one(objects, "ServiceAccount")
    assert (account["metadata"]["namespace"], account["metadata"]["name"]) == (system, "pod-deletion-cost")
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "pod-deletion-cost" and pod["automountServiceAccountToken"] is True
    with_pools = {f"{region(name).kubernetes.namespace_prefix}-t-{a.tenant}" for a in project().agents_in(name)}
    roles = [o for o in objects if o["kind"] == "Role"]
    bindings = [o for o in objects if o["kind"] == "RoleBinding"]
    assert {r["metadata"]["namespace"] for r in roles} == {b["metadata"]["namespace"] for b in bindings} == with_pools
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    for role in roles:
        assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "patch"]}]
    for binding in bindings:
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-deletion-cost"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pod-deletion-cost", "namespace": system}]


@pytest.mark.parametrize("name", REGIONS)
def test_its_config_names_every_pool_as_the_pools_are_rendered(name: str) -> None:
    """The pods it lists are exactly each agent Deployment's, and it reads the Prometheus the
    ScaledObjects read, from the series of the pools' own PodMonitors."""
    objects = built(name)
    cm = one(objects, "ConfigMap")
    config = Config.from_json(cm["data"]["config.json"])
    assert "secret" not in cm["data"]["config.json"].lower()
    r, agents = region(name), project().agents_in(name)
    want = {}
    for agent in agents:
        pool = {o["kind"]: o for o in build_agent_pool(r, agent, image="x")}
        dep, so, monitor = pool["Deployment"], pool["ScaledObject"], pool["PodMonitor"]
        want[(dep["metadata"]["namespace"], dep["metadata"]["name"])] = dep["spec"]["selector"]["matchLabels"]
        assert config.prometheus_url == so["spec"]["triggers"][0]["metadata"]["serverAddress"].rstrip("/")
        assert f'{monitor["metadata"]["namespace"]}/{monitor["metadata"]["name"]}' in config.query
    assert {(p.namespace, p.name): dict(p.selector) for p in config.pools} == want
    assert config.query.startswith("max by (namespace, pod) (lk_agents_active_job_count{job=~")
    # The pod rolls when its config changes.
    annotations = one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["voxplane.io/config-checksum"]


@pytest.mark.parametrize("name", REGIONS)
def test_it_is_reachable_by_prometheus_and_reaches_dns_prometheus_and_the_api_server(name: str) -> None:
    """(tests/desired/test_network_policy.py asks a policy engine every flow.)"""
    r = region(name)
    policy = one(built(name), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": monitoring_namespace(r)}}}
    assert policy["ingress"] == [{"from": [monitoring], "ports": [{"protocol": "TCP", "port": 9103}]}]
    dns, prometheus, api = policy["egress"]
    assert dns["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    # The port of the region's `prometheus_url` (9090 in us-east and eu-west, the dev one's in local).
    port = urllib.parse.urlsplit(r.kubernetes.prometheus_url).port
    assert port == (19090 if name == "local" else 9090)
    assert prometheus == {"to": [monitoring], "ports": [{"protocol": "TCP", "port": port}]}
    cidrs = r.kubernetes.api_server_cidrs or r.kubernetes.node_cidrs
    assert api == {"to": [{"ipBlock": {"cidr": c if "/" in c else f"{c}/32"}} for c in cidrs],
                   "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}


def test_the_api_server_ranges_are_the_manifests_when_set() -> None:
    r = region("us-east")
    pinned = dataclasses.replace(r, kubernetes=dataclasses.replace(r.kubernetes, api_server_cidrs=("10.40.48.0/28",)))
    policy = one(build_deletion_cost(pinned, project().agents_in("us-east"), image=IMAGE), "NetworkPolicy")
    assert policy["spec"]["egress"][2]["to"] == [{"ipBlock": {"cidr": "10.40.48.0/28"}}]


def test_a_region_without_agent_pools_runs_no_controller() -> None:
    assert build_deletion_cost(region("local"), [], image=IMAGE) == []


def test_the_config_is_what_the_controller_reads() -> None:
    cm = one(built("local"), "ConfigMap")
    data = json.loads(cm["data"]["config.json"])
    assert data["version"] == 1 and data["interval_seconds"] == 5.0  # the workers' scrape interval
    assert (data["writes_per_second"], data["burst"]) == (5.0, 10)


@pytest.mark.parametrize("name", REGIONS)
def test_an_admission_policy_narrows_its_patches_to_the_annotation(name: str) -> None:
    """RBAC's finest grain is `patch pods`; the API server's CEL policy refuses anything else the
    controller's account changes (checked against the real API server in tests/controllers/)."""
    r = region(name)
    prefix = r.kubernetes.namespace_prefix
    objects = built(name)
    policy, binding = one(objects, "ValidatingAdmissionPolicy"), one(objects, "ValidatingAdmissionPolicyBinding")
    assert policy["metadata"]["name"] == binding["spec"]["policyName"] == f"{prefix}-pod-deletion-cost"
    assert "namespace" not in policy["metadata"]
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConstraints"]["resourceRules"] == [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["pods"]}]
    assert [c["expression"] for c in spec["matchConditions"]] == [
        f"request.userInfo.username == 'system:serviceaccount:{prefix}-system:pod-deletion-cost'"]
    assert any("object.spec == oldObject.spec" in v["expression"] for v in spec["validations"])
    assert binding["spec"]["validationActions"] == ["Deny"]
    (selector,) = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
    roles = sorted(o["metadata"]["namespace"] for o in objects if o["kind"] == "Role")
    assert selector == {"key": "kubernetes.io/metadata.name", "operator": "In", "values": roles}
