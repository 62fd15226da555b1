"""The gateway's rendered objects (issue #9): config from the manifests, keys only in a Secret,
a restricted Deployment with probes, Service, PDB, NetworkPolicy, PodMonitor, and tenants whose
pods reach LiveKit signalling only through it."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pulumi
import pytest

from voxplane.desired.common import (
    GATEWAY_KEY,
    GATEWAY_PORT,
    RESTRICTED_CONTAINER,
    SecretValue,
    gateway_internal_url,
    tenant_api_key,
)
from voxplane.components.gateway import GATEWAY_CONTEXT, LiveKitGateway, LiveKitGatewayArgs
from voxplane.deploy.render import PLACEHOLDER_DIGEST
from voxplane.components.secrets import SecretResolver
from voxplane.components.images import build_context_hash
from voxplane.desired.gateway import (
    GATEWAY_REPOSITORY,
    ANNOTATION_KEYS_CHECKSUM,
    GATEWAY_LISTEN_PORT,
    GATEWAY_METRICS_PORT,
    build_gateway,
    gateway_selector,
)
from voxplane.desired.sfu import api_key_names
from voxplane.desired.tenant import LIVEKIT_SECRET, build_tenant
from voxplane.gateway.scope import GatewayConfig

from voxplane.manifest.loader import load
from voxplane.manifest.problems import ManifestError
from voxplane.deploy.render import render

from ..support.repo import REPO, copy_manifests
from ._helpers import REGIONS, by_kind_and_name, desired, project, region, validate_strict

DOCKER_IMAGE = "docker:index/image:Image"


#: What the component passes: the pushed digest of the image it builds from GATEWAY_CONTEXT.
IMAGE = "registry.example/voxplane-gateway@sha256:" + "0" * 64


def _objects(name: str) -> dict[tuple[str, str], dict]:
    return by_kind_and_name(build_gateway(region(name), project().agents_in(name), image=IMAGE))


@pytest.mark.parametrize("name", REGIONS)
def test_every_object_passes_strict_validation(name: str) -> None:
    for obj in build_gateway(region(name), project().agents_in(name), image=IMAGE):
        if obj["kind"] != "PodMonitor":
            validate_strict(obj)


@pytest.mark.parametrize("name", REGIONS)
def test_config_holds_the_tenant_scopes_and_no_secret(name: str) -> None:
    objs = _objects(name)
    config = GatewayConfig.from_json(objs[("ConfigMap", "livekit-gateway")]["data"]["config.json"])
    r = region(name)
    assert set(config.tenants) == set(r.tenants)
    assert config.platform_key == GATEWAY_KEY and config.upstream.startswith("http://livekit.")
    for tenant, scope in config.tenants.items():
        assert scope.api_key == tenant_api_key(tenant)
        agents = [a for a in project().agents_in(name) if a.tenant == tenant]
        assert scope.agents == {a.scoped_name for a in agents}
    secret = objs[("Secret", "livekit-gateway-keys")]
    assert secret["stringData"] == {k: SecretValue("livekit-secret", k)
                                    for k in [GATEWAY_KEY] + [tenant_api_key(t) for t in r.tenants]}
    # The server knows the gateway key and never a tenant key.
    assert GATEWAY_KEY in api_key_names(r) and not any(tenant_api_key(t) in api_key_names(r) for t in r.tenants)


def test_deployment_is_restricted_probed_and_rolls_on_a_new_tenant() -> None:
    r = region("us-east")
    dep = _objects("us-east")[("Deployment", "livekit-gateway")]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert {k: c["securityContext"][k] for k in RESTRICTED_CONTAINER} == RESTRICTED_CONTAINER
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert dep["spec"]["replicas"] >= 2 and dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    # Every tenant's key is in it: on the SFU's media pool, never where tenant agents run.
    assert pod["nodeSelector"] == dict(r.livekit.node_pool.selector) != dict(r.agents.node_pool.selector)
    assert pod["tolerations"] == [{"key": "voxplane.io/media", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    before = dep["spec"]["template"]["metadata"]["annotations"][ANNOTATION_KEYS_CHECKSUM]
    extra = dict(r.tenants)
    extra["acme"] = dataclasses.replace(next(iter(r.tenants.values())), name="acme")
    after = by_kind_and_name(build_gateway(dataclasses.replace(r, tenants=extra), project().agents_in("us-east"),
                                           image=IMAGE))
    assert after[("Deployment", "livekit-gateway")]["spec"]["template"]["metadata"]["annotations"][
        ANNOTATION_KEYS_CHECKSUM] != before


def test_service_pdb_policy_and_monitor() -> None:
    objs = _objects("local")
    svc = objs[("Service", "livekit-gateway")]
    assert [(p["name"], p["port"]) for p in svc["spec"]["ports"]] == [("http", GATEWAY_PORT), ("metrics", GATEWAY_METRICS_PORT)]
    assert gateway_internal_url(region("local")) == "ws://livekit-gateway.vox-system.svc.cluster.local:7880"
    assert objs[("PodDisruptionBudget", "livekit-gateway")]["spec"]["maxUnavailable"] == 1
    policy = objs[("NetworkPolicy", "livekit-gateway")]["spec"]
    assert policy["podSelector"]["matchLabels"] == gateway_selector(region("local"))
    egress_ports = [p["port"] for rule in policy["egress"] for p in rule["ports"]]
    assert region("local").livekit.ports.http in egress_ports
    assert objs[("PodMonitor", "livekit-gateway")]["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


@pytest.mark.parametrize("name", REGIONS)
def test_tenant_pods_reach_signalling_only_through_the_gateway(name: str) -> None:
    """The SFU's API port is not open towards any address from a tenant namespace; the gateway's
    pods are, on their listen port; media ports still go straight to the SFU."""
    r = region(name)
    for tenant in r.tenants.values():
        objs = by_kind_and_name(build_tenant(r, tenant, [a for a in project().agents_in(name) if a.tenant == tenant.name]))
        egress = objs[("NetworkPolicy", "allow-platform")]["spec"]["egress"]
        anywhere = [rule for rule in egress if any("ipBlock" in t for t in rule.get("to", []))]
        open_ports = {p["port"] for rule in anywhere for p in rule["ports"]}
        assert r.livekit.ports.http not in open_ports
        assert r.livekit.ports.rtc_tcp in open_ports and r.livekit.ports.rtc_udp.start in open_ports
        to_gateway = [rule for rule in egress if any(t.get("podSelector", {}).get("matchLabels") == gateway_selector(r)
                                                      for t in rule.get("to", []))]
        assert [p["port"] for rule in to_gateway for p in rule["ports"]] == [GATEWAY_LISTEN_PORT]
        secret = objs[("Secret", LIVEKIT_SECRET)]["stringData"]
        assert secret["LIVEKIT_API_KEY"] == tenant_api_key(tenant.name)
        assert json.dumps(str(secret["LIVEKIT_API_SECRET"])) and secret["LIVEKIT_API_SECRET"] == SecretValue(
            "livekit-secret", tenant_api_key(tenant.name))


# --- the gateway's image, as the stack builds it (components/gateway.py) ----------------------------

def _rendered(name: str, root: Path = REPO) -> tuple[dict[str, dict], dict]:
    """(docker Images by resource name, the gateway Deployment) of region `name`'s render."""
    result = render(name, root)
    images = {r.name: r.inputs for r in result.resources if r.type == DOCKER_IMAGE}
    deployment = next(o for o in result.kubernetes if o["kind"] == "Deployment" and o["metadata"]["name"] == "livekit-gateway")
    return images, deployment


def test_the_stack_builds_the_gateway_from_its_package_and_runs_the_pushed_digest() -> None:
    images, deployment = _rendered("us-east")
    built = images["us-east-gateway-image"]
    tag = build_context_hash(GATEWAY_CONTEXT)
    assert built["imageName"] == f"registry.voice.example.com/agents/{GATEWAY_REPOSITORY}:{tag}"
    assert built["build"]["context"] == GATEWAY_CONTEXT
    assert built["build"]["dockerfile"] == str(Path(GATEWAY_CONTEXT) / "Dockerfile")
    assert built["build"]["platform"] == "linux/amd64"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    # The pushed image's repoDigest: in a render, the pushed tag with the placeholder digest.
    assert container["image"] == f"{built['imageName']}@{PLACEHOLDER_DIGEST}", container["image"]


def test_a_stack_that_builds_nothing_deploys_the_content_hash_tag() -> None:
    """local (voxplane:buildImages false): no Image; the tag to build and push from the folder."""
    images, deployment = _rendered("local")
    assert not [n for n in images if n.endswith("gateway-image")]
    tag = build_context_hash(GATEWAY_CONTEXT)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"localhost:5000/voxplane/{GATEWAY_REPOSITORY}:{tag}"


def test_a_gateway_code_change_changes_the_tag_and_nothing_else_does(tmp_path: Path) -> None:
    """The tag covers the package, its Dockerfile and its lock, and nothing outside the folder."""
    context = tmp_path / "gateway"
    shutil.copytree(GATEWAY_CONTEXT, context, ignore=shutil.ignore_patterns("__pycache__"))
    before = build_context_hash(str(context))
    (context / "__pycache__").mkdir()
    (context / "__pycache__" / "server.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "elsewhere.py").write_text("x = 1\n")
    assert build_context_hash(str(context)) == before
    for edited in ("server.py", "requirements.txt", "Dockerfile"):
        path = context / edited
        original = path.read_bytes()
        path.write_bytes(original + b"\n")
        assert build_context_hash(str(context)) != before, edited
        path.write_bytes(original)


def test_a_stack_without_a_registry_is_refused_at_its_file(tmp_path: Path) -> None:
    """The gateway's image has to be pushed somewhere: validation names the stack file, before
    any render or `pulumi up`, and render refuses the same way (no traceback)."""
    repo = copy_manifests(tmp_path / "repo")
    stack = repo / "Pulumi.eu-west.yaml"
    stack.write_text("".join(line for line in stack.read_text().splitlines(keepends=True)
                             if "imageRegistry" not in line))
    problems = [str(p) for p in load((), repo).problems]
    assert len(problems) == 1 and problems[0].startswith("Pulumi.eu-west.yaml:"), problems
    assert "builds images (the LiveKit gateway's from voxplane/gateway, the GPU preflight's from " \
           "voxplane/gpu_preflight, agents/reservations.yaml) and sets no voxplane:imageRegistry to push them to" \
           in problems[0], problems[0]
    with pytest.raises(ManifestError):
        render("eu-west", repo)
    # Building nothing, the gateway needs no registry; the agents built from source still do.
    stack.write_text(stack.read_text() + "  voxplane:buildImages: false\n")
    (problem,) = [str(p) for p in load((), repo).problems]
    assert "deploys agents built from source (agents/reservations.yaml) and sets no voxplane:imageRegistry to " \
           "name their images" in problem, problem


@pulumi.runtime.test
def test_building_nothing_without_a_registry_names_the_bare_tag(mocked):
    """No registry and no build (a region no stack deploys yet, rendered): the tag alone names
    what to build from the package; no Image is registered."""
    r = region("eu-west")
    gateway = LiveKitGateway("eu-west-gateway", LiveKitGatewayArgs(
        region=r, objects=desired("eu-west").gateway, secrets=SecretResolver(r.name, []), image_registry=None,
        build_images=False))

    def check(args: list) -> None:
        image = args[0]
        assert image == f"{GATEWAY_REPOSITORY}:{build_context_hash(GATEWAY_CONTEXT)}"
        assert not [x for x in mocked.resources if x.typ == DOCKER_IMAGE]
        (dep,) = [x for x in mocked.resources if x.typ == "kubernetes:apps/v1:Deployment"]
        assert dep.inputs["spec"]["template"]["spec"]["containers"][0]["image"] == image

    # Resolves once every child is registered.
    return pulumi.Output.all(gateway.image, *[c.urn for c in gateway.children.values()]).apply(check)


@pulumi.runtime.test
def test_building_without_a_registry_stops_naming_the_package_and_the_key(mocked):
    """Past validation (a program run without it), a stack that builds and names no registry stops
    with one line naming what needs the image, its package and the config key to set."""
    r = region("eu-west")
    with pytest.raises(pulumi.RunError) as stopped:
        LiveKitGateway("eu-west-gateway", LiveKitGatewayArgs(
            region=r, objects=desired("eu-west").gateway, secrets=SecretResolver(r.name, []), image_registry=" ",
            build_images=True))
    assert str(stopped.value) == (
        "region 'eu-west' runs the LiveKit gateway, whose image the stack builds from voxplane/gateway but no image "
        "registry is set; set stack config `voxplane:imageRegistry` (pulumi config set voxplane:imageRegistry "
        "<registry>/<path>)")
