"""Agent pools: the builder's objects for every example agent in every region it runs in, and the
AgentPool component under Pulumi mocks (image build, digest pinning, ignore_changes, secrets)."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import pulumi
import pytest

from voxplane.components.agent_pool import AgentPool, AgentPoolArgs, agent_base_image, builds_on_base
from voxplane.components.images import IMAGE_PLACEHOLDER, build_context_hash
from voxplane.components.secrets import SecretResolver
from voxplane.desired.agent_pool import build_agent_pool
from voxplane.desired.common import (
    AGENT_HEALTH_PORT,
    AGENT_METRICS_PORT,
    RESTRICTED_CONTAINER,
    SecretValue,
    gateway_internal_url,
    has_llm_router,
    livekit_internal_url,
    model_base_url,
    walk_secret_values,
)
from voxplane.manifest.model import Agent, Region

from ..support.pulumi_mocks import mock_digest
from ..support.repo import REPO
from ._helpers import (
    LIVEKIT_ROOT_SECRET,
    SECRET_SIG,
    by_kind,
    by_name,
    desired,
    plain,
    project,
    region,
    secret_wrapping,
    validate_strict,
)

IMAGE = "registry.example.com/agents/test@sha256:" + "a" * 64
CRD_KINDS = {"PodMonitor", "ScaledObject"}


def _agent(name: str) -> Agent:
    return next(a for a in project().agents if a.name == name)


PAIRS = [(a.name, r) for a in project().agents for r in a.regions]


def _build(agent_name: str, region_name: str) -> tuple[Region, Agent, dict[str, dict[str, Any]]]:
    region, agent = project().regions[region_name], _agent(agent_name)
    return region, agent, by_kind(build_agent_pool(region, agent, image=IMAGE))


def _container(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    containers = objs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _env(objs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return by_name(_container(objs)["env"])


def test_examples_cover_every_region_and_agent():
    """The parametrised cases are the real examples: 3 agents over their declared regions (7 pools)."""
    assert sorted(PAIRS) == sorted(
        [
            ("reservations", "local"), ("reservations", "us-east"), ("reservations", "eu-west"),
            ("scheduler", "local"), ("scheduler", "eu-west"),
            ("support", "local"), ("support", "us-east"),
        ]
    )


# --- every example pool ----------------------------------------------------------------------------


@pytest.mark.parametrize("agent_name,region_name", PAIRS)
def test_builtin_kinds_pass_strict_schema_validation(agent_name, region_name):
    """Every built-in kind validates strictly against Kubernetes 1.34 (CRs are validated elsewhere)."""
    _, _, objs = _build(agent_name, region_name)
    builtin = [o for o in objs.values() if o["kind"] not in CRD_KINDS]
    assert {o["kind"] for o in builtin} >= {"Deployment", "PodDisruptionBudget"}
    for obj in builtin:
        validate_strict(obj)


@pytest.mark.parametrize("agent_name,region_name", PAIRS)
def test_objects_live_in_the_tenant_namespace_with_ownership_metadata(agent_name, region_name):
    """Every object sits in <prefix>-t-<tenant>, is named after the agent and carries the ownership contract."""
    region, agent, objs = _build(agent_name, region_name)
    assert set(objs) <= {"Secret", "Deployment", "PodDisruptionBudget", "PodMonitor", "ScaledObject"}
    for obj in objs.values():
        meta = obj["metadata"]
        assert meta["namespace"] == f"vox-t-{agent.tenant}"
        assert meta["name"] == (f"{agent.name}-secrets" if obj["kind"] == "Secret" else agent.name)
        assert meta["labels"] == {
            "app.kubernetes.io/name": agent.name,
            "app.kubernetes.io/instance": agent.name,
            "app.kubernetes.io/component": "agent",
            "app.kubernetes.io/part-of": region.name,
            "app.kubernetes.io/managed-by": "voxplane",
            "voxplane.io/tenant": agent.tenant,
            "voxplane.io/agent": agent.name,
        }
        assert meta["annotations"] == {"voxplane.io/source": f"agents/{agent.name}.yaml"}


@pytest.mark.parametrize("agent_name,region_name", PAIRS)
def test_livekit_connection_and_explicit_dispatch_env(agent_name, region_name):
    """Workers reach LiveKit through the gateway (never the SFU itself: the tenant's key works only
    there) and register as <tenant>-<agent> (explicit dispatch)."""
    region, agent, objs = _build(agent_name, region_name)
    env = _env(objs)
    assert env["LIVEKIT_URL"] == {"name": "LIVEKIT_URL", "value": gateway_internal_url(region)}
    assert env["LIVEKIT_URL"]["value"] == "ws://livekit-gateway.vox-system.svc.cluster.local:7880"
    assert env["LIVEKIT_URL"]["value"] != livekit_internal_url(region)
    for var in ("LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        assert env[var] == {"name": var, "valueFrom": {"secretKeyRef": {"name": "livekit-api", "key": var}}}
    assert env["LIVEKIT_AGENT_NAME"]["value"] == agent.scoped_name == f"{agent.tenant}-{agent.name}"
    assert env["VOXPLANE_METRICS_PORT"]["value"] == str(AGENT_METRICS_PORT)
    assert env["VOXPLANE_DRAIN_TIMEOUT"]["value"] == str(agent.scaling.drain_timeout)
    for key, value in agent.env.items():
        assert env[key] == {"name": key, "value": value}


@pytest.mark.parametrize("agent_name,region_name", PAIRS)
def test_inference_endpoints_are_injected_per_role(agent_name, region_name):
    """Region models become in-cluster base URLs and model ids; providers get endpoint, model and a key by reference."""
    region, agent, objs = _build(agent_name, region_name)
    env = _env(objs)
    for role, spec in agent.inference.roles().items():
        prefix = f"VOXPLANE_{role.upper()}"
        if spec.model is not None:
            model = region.models[spec.model]
            assert env[f"{prefix}_BASE_URL"]["value"] == model_base_url(region, spec.model)
            # A model with a router (an LLM with several replicas) is reached through it, and the
            # glue ends each call's session there.
            routed = has_llm_router(model)
            host = f"{spec.model}-router" if routed else spec.model
            assert env[f"{prefix}_BASE_URL"]["value"].startswith(f"http://{host}.vox-inference.svc.cluster.local:")
            assert env[f"{prefix}_MODEL"]["value"] == model.model_id
            assert (env.get(f"{prefix}_SESSION_END_URL") or {}).get("value") == (
                f"http://{host}.vox-inference.svc.cluster.local:{model.port}/finish_session" if routed else None)
            assert f"{prefix}_PROVIDER" not in env and f"{prefix}_API_KEY" not in env
        else:
            assert spec.provider is not None
            assert env[f"{prefix}_PROVIDER"]["value"] == spec.provider.name
            assert env[f"{prefix}_BASE_URL"]["value"] == spec.provider.endpoint
            assert "value" not in env[f"{prefix}_API_KEY"]


@pytest.mark.parametrize("agent_name,region_name", PAIRS)
def test_secrets_never_appear_as_plain_values(agent_name, region_name):
    """Secret markers exist only in the agent's Secret; every secret env var is a secretKeyRef."""
    _, agent, objs = _build(agent_name, region_name)
    for kind, obj in objs.items():
        if kind != "Secret":
            assert list(walk_secret_values(obj)) == [], kind
    env = _env(objs)
    for var in agent.secrets:
        assert set(env[var]) == {"name", "valueFrom"}
    dumped = json.dumps(plain(list(objs.values())))
    assert "load_fnc" not in dumped and "load_threshold" not in dumped


@pytest.mark.parametrize("agent_name,region_name", PAIRS)
def test_deployment_drains_rolls_and_probes_like_livekit_agents_needs(agent_name, region_name):
    """Grace = drain_timeout + 30 s, maxUnavailable 0 / maxSurge 25%, startup ≥ 300 s; the probes on
    8081 are the platform glue's: readiness `/ready` (registered, not draining), liveness and
    startup `/live` (livekit-agents' own `/` answers 200 while reconnecting and draining)."""
    _, agent, objs = _build(agent_name, region_name)
    spec = objs["Deployment"]["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] == agent.scaling.min_workers
    assert pod["terminationGracePeriodSeconds"] == agent.scaling.drain_timeout + 30
    assert pod["terminationGracePeriodSeconds"] >= agent.scaling.drain_timeout
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}}
    c = _container(objs)
    assert c["image"] == IMAGE
    assert c["command"] == list(agent.command)
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": AGENT_HEALTH_PORT}
    for probe in ("livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"] == {"path": "/live", "port": AGENT_HEALTH_PORT}
    # Liveness restarts only after LiveKit was lost for the glue's timeout plus the probe's failures.
    env = _env(objs)
    live = c["livenessProbe"]
    assert int(env["VOXPLANE_LIVEKIT_LOST_TIMEOUT"]["value"]) + live["periodSeconds"] * live["failureThreshold"] >= 60
    assert env["VOXPLANE_HEALTH_PORT"]["value"] == str(AGENT_HEALTH_PORT)
    assert env["VOXPLANE_SESSIONS_PER_WORKER"]["value"] == str(agent.scaling.sessions_per_worker)
    # One prewarmed process per session: an idle worker refuses simultaneous jobs beyond them.
    assert env["VOXPLANE_IDLE_PROCESSES"]["value"] == str(agent.scaling.sessions_per_worker)
    assert env["VOXPLANE_LOAD_THRESHOLD"]["value"] == "1.0"
    start = c["startupProbe"]
    assert start["failureThreshold"] * start["periodSeconds"] >= 300
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"health": 8081, "metrics": AGENT_METRICS_PORT}


@pytest.mark.parametrize("agent_name,region_name", PAIRS)
def test_pod_is_restricted_and_never_evicted_by_consolidation(agent_name, region_name):
    """Restricted security, read-only root with a /tmp emptyDir, do-not-disrupt, no prometheus.io annotations."""
    _, agent, objs = _build(agent_name, region_name)
    template = objs["Deployment"]["spec"]["template"]
    pod = template["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = _container(objs)
    assert c["securityContext"] == {**RESTRICTED_CONTAINER, "readOnlyRootFilesystem": True}
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": agent.resources.ephemeral_storage}}]
    assert template["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
    assert not any(k.startswith("prometheus.io/") for k in template["metadata"]["annotations"])
    assert c["resources"] == {
        "requests": {"cpu": agent.resources.cpu, "memory": agent.resources.memory,
                     "ephemeral-storage": agent.resources.ephemeral_storage},
        "limits": {"memory": agent.resources.memory, "ephemeral-storage": agent.resources.ephemeral_storage},
    }
    spread = pod["topologySpreadConstraints"]
    assert spread[0]["topologyKey"] == "kubernetes.io/hostname"
    assert spread[0]["whenUnsatisfiable"] == "ScheduleAnyway"
    assert spread[0]["labelSelector"]["matchLabels"] == objs["Deployment"]["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("agent_name,region_name", PAIRS)
def test_pdb_and_podmonitor_select_the_pool(agent_name, region_name):
    """The PDB (maxUnavailable 1) and the PodMonitor (metrics port) select exactly the pool's pods."""
    _, _, objs = _build(agent_name, region_name)
    pod_labels = objs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    selector = objs["Deployment"]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert objs["PodDisruptionBudget"]["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
    monitor = objs["PodMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"] == {"matchLabels": selector}
    assert "jobLabel" not in monitor["spec"] and "namespaceSelector" not in monitor["spec"]
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "5s"}]


@pytest.mark.parametrize("agent_name,region_name", PAIRS)
def test_keda_scales_on_active_jobs_from_this_pools_podmonitor(agent_name, region_name):
    """One prometheus trigger on lk_agents_active_job_count with the labels prometheus-operator sets; never CPU."""
    region, agent, objs = _build(agent_name, region_name)
    so = objs["ScaledObject"]
    ns = f"vox-t-{agent.tenant}"
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    spec = so["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": objs["Deployment"]["metadata"]["name"]}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (agent.scaling.min_workers, agent.scaling.max_workers)
    assert [t["type"] for t in spec["triggers"]] == ["prometheus"]
    trigger = spec["triggers"][0]
    assert trigger["metricType"] == "AverageValue"
    # job = "<podmonitor namespace>/<podmonitor name>" (prometheus-operator, no jobLabel set).
    job = f'{objs["PodMonitor"]["metadata"]["namespace"]}/{objs["PodMonitor"]["metadata"]["name"]}'
    assert trigger["metadata"] == {
        "serverAddress": region.kubernetes.prometheus_url,
        # `or vector(0)`: a pool without samples yet reads 0 (tests/desired/test_scaling_query.py).
        "query": f'sum(lk_agents_active_job_count{{namespace="{ns}",job="{job}"}}) or vector(0)',
        # Below what a worker carries (tests/desired/test_scaling_query.py shows why it must be).
        "threshold": f"{agent.scaling.sessions_per_worker * agent.scaling.target_utilization / 100:g}",
        "activationThreshold": "0",
    }
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert behavior["scaleUp"]["policies"] == [{"type": "Pods", "value": 4, "periodSeconds": 30}]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == agent.scaling.scale_down_window
    assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 120}]


# --- concrete facts of particular examples ---------------------------------------------------------


def test_reservations_uses_existing_secret_in_place_and_creates_none():
    """A `secret`+`key` reference becomes a secretKeyRef to that Secret; nothing is copied."""
    _, _, objs = _build("reservations", "us-east")
    assert "Secret" not in objs
    assert _env(objs)["BOOKING_API_TOKEN"] == {
        "name": "BOOKING_API_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "bellavista-booking", "key": "token"}},
    }
    assert objs["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 1830
    # 8 sessions per worker at the default 70%: KEDA aims at 5.6 active jobs per worker.
    assert objs["ScaledObject"]["spec"]["triggers"][0]["metadata"]["threshold"] == "5.6"
    assert objs["ScaledObject"]["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
        "stabilizationWindowSeconds"
    ] == 900


def test_scheduler_config_secret_lands_in_the_agent_secret():
    """A `config` reference is copied into <agent>-secrets as a stack-config marker and read back by secretKeyRef."""
    _, _, objs = _build("scheduler", "eu-west")
    assert objs["Secret"]["stringData"] == {"FHIR_CLIENT_SECRET": SecretValue("config", "northwindFhirClientSecret")}
    assert objs["Secret"]["type"] == "Opaque"
    assert _env(objs)["FHIR_CLIENT_SECRET"]["valueFrom"] == {
        "secretKeyRef": {"name": "scheduler-secrets", "key": "FHIR_CLIENT_SECRET"}
    }
    assert _container(objs)["image"] == IMAGE


def test_support_provider_key_is_a_secret_and_model_is_passed():
    """The external LLM provider gets PROVIDER/BASE_URL/MODEL values and its API key from <agent>-secrets."""
    _, _, objs = _build("support", "us-east")
    env = _env(objs)
    assert env["VOXPLANE_LLM_PROVIDER"]["value"] == "openai"
    assert env["VOXPLANE_LLM_BASE_URL"]["value"] == "https://api.openai.com/v1"
    assert env["VOXPLANE_LLM_MODEL"]["value"] == "gpt-4o-mini"
    assert env["VOXPLANE_LLM_API_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "support-secrets", "key": "VOXPLANE_LLM_API_KEY"}
    }
    assert objs["Secret"]["stringData"] == {"VOXPLANE_LLM_API_KEY": SecretValue("config", "northwindOpenaiKey")}
    assert env["VOXPLANE_STT_BASE_URL"]["value"] == "http://whisper.vox-inference.svc.cluster.local:8000/v1"
    assert env["VOXPLANE_TTS_BASE_URL"]["value"] == "http://kokoro.vox-inference.svc.cluster.local:8880/v1"
    assert env["VOXPLANE_TTS_MODEL"]["value"] == project().regions["us-east"].models["kokoro"].model_id


def test_dedicated_nodes_tenant_runs_on_its_own_pool():
    """northwind is dedicated-nodes in us-east (its pool and toleration); elsewhere agents share the region pool."""
    _, _, us = _build("support", "us-east")
    pod = us["Deployment"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"voxplane.io/pool": "agents-northwind"}
    assert pod["tolerations"] == [
        {"key": "voxplane.io/tenant", "operator": "Equal", "value": "northwind", "effect": "NoSchedule"}
    ]
    _, _, eu = _build("scheduler", "eu-west")
    pod = eu["Deployment"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"voxplane.io/pool": "agents"}
    assert "tolerations" not in pod


def test_default_drain_gives_an_hour_and_a_margin():
    """support keeps livekit-agents' default drain (3600 s): the grace period is 3630 s."""
    _, _, objs = _build("support", "local")
    assert objs["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 3630


def test_scale_to_zero_pool_builds_valid_objects():
    """min_workers 0 gives replicas 0 and minReplicaCount 0 (still strictly valid)."""
    region, agent = project().regions["local"], _agent("reservations")
    idle = dataclasses.replace(agent, scaling=dataclasses.replace(agent.scaling, min_workers=0))
    objs = {o["kind"]: o for o in build_agent_pool(region, idle, image=IMAGE)}
    assert objs["Deployment"]["spec"]["replicas"] == 0
    assert objs["ScaledObject"]["spec"]["minReplicaCount"] == 0
    validate_strict(objs["Deployment"])


# --- build-context hash ------------------------------------------------------------------------------


def test_build_context_hash_is_deterministic_and_content_sensitive(tmp_path):
    """Same files in any creation order → same tag; one changed byte, a rename or another Dockerfile → a new tag."""
    a, b = tmp_path / "a", tmp_path / "b"
    for root, order in ((a, ["agent.py", "Dockerfile", "lib/x.py"]), (b, ["lib/x.py", "Dockerfile", "agent.py"])):
        for rel in order:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(f"content of {rel}\n")
    (b / "__pycache__").mkdir()
    (b / "__pycache__" / "agent.cpython-311.pyc").write_bytes(b"\x00junk")
    base = build_context_hash(str(a))
    assert len(base) == 64 and base == build_context_hash(str(b))
    assert build_context_hash(str(a), "Dockerfile.prod") != base
    (b / "agent.py").write_text("content of agent.py!\n")
    assert build_context_hash(str(b)) != base
    (b / "agent.py").write_text("content of agent.py\n")
    assert build_context_hash(str(b)) == base
    (b / "lib" / "x.py").rename(b / "lib" / "y.py")
    assert build_context_hash(str(b)) != base
    # An image built on the platform's agent base: the base's own hash is part of the tag.
    assert build_context_hash(str(a), base="1" * 64) not in (base, build_context_hash(str(a), base="2" * 64))


# --- the component under Pulumi mocks ---------------------------------------------------------------

SECRETS = {
    "livekitRootSecret": LIVEKIT_ROOT_SECRET,
    "northwindOpenaiKey": "sk-test-openai-not-in-plain-inputs",
    "northwindFhirClientSecret": "fhir-secret-not-in-plain-inputs",
    "northwindTrunkPassword": "trunk-password-not-in-plain-inputs",
}
REGISTRY = "registry.example.com/voxplane"


@pytest.fixture
def stack_secrets() -> dict[str, str]:
    """The mocked stack's secrets: the root secret and the agents' config secrets."""
    return SECRETS


@pytest.fixture
def stack_config() -> dict[str, str]:
    """The mocked stack has an image registry to push built agents to."""
    return {"imageRegistry": REGISTRY}


def _pool(agent_name: str, region_name: str, registry: str | None = REGISTRY, *, build: bool = True) -> AgentPool:
    """The pool alone, with the agent base image registered beside it as a region stack would."""
    region, agent = project().regions[region_name], _agent(agent_name)
    secrets = SecretResolver(region.name, ["vx-admin", *(f"vx-{t}" for t in region.tenants)])
    name = f"{region_name}-agent-{agent.scoped_name}"
    base = (agent_base_image(f"{name}-base-image", registry=registry, repo_root=str(REPO), build_images=build,
                             opts=pulumi.ResourceOptions())
            if registry and builds_on_base(agent, str(REPO)) else None)
    return AgentPool(name, AgentPoolArgs(
        region=region, agent=agent, objects=desired(region_name).agents[agent.scoped_name], secrets=secrets,
        image_registry=registry, repo_root=str(REPO), build_images=build, base_image=base))


def _registered(*pools: AgentPool) -> pulumi.Output[list]:
    """Resolves once every child of `pools` has been registered (urns come back from the monitor)."""
    urns = [c.urn for p in pools for c in p.children.values()]
    return pulumi.Output.all(*urns)


@pulumi.runtime.test
def test_component_builds_image_and_pins_deployment_to_its_digest(mocked):
    """reservations (code.build, FROM the platform's agent base image) registers the base image and
    its own Image tagged with the folder hash and the base's; the agent builds FROM the base's
    pushed digest, and the Deployment runs the agent's repoDigest."""
    pool = _pool("reservations", "us-east")
    context = os.path.join(str(REPO), "agents/reservations")
    base_context = os.path.join(str(REPO), "agents/_platform")
    base_name = f"{REGISTRY}/voxplane-agent-base:{build_context_hash(base_context)}"
    tag = build_context_hash(context, base=build_context_hash(base_context))
    expected_name = f"{REGISTRY}/bellavista-reservations:{tag}"

    def check(outputs):
        images = {r.name: r for r in mocked.resources if r.typ == "docker:index/image:Image"}
        assert sorted(images) == ["us-east-agent-bellavista-reservations-base-image",
                                  "us-east-agent-bellavista-reservations-image"]
        base_arg = images["us-east-agent-bellavista-reservations-base-image"]
        assert base_arg.inputs["imageName"] == base_name
        assert base_arg.inputs["build"] == {
            "context": base_context,
            "dockerfile": os.path.join(base_context, "Dockerfile"),
            "platform": "linux/amd64",
        }
        image_arg = images["us-east-agent-bellavista-reservations-image"]
        assert image_arg.inputs["imageName"] == expected_name
        assert image_arg.inputs["build"] == {
            "context": context,
            "dockerfile": os.path.join(context, "Dockerfile"),
            "platform": "linux/amd64",
            "args": {"VOXPLANE_AGENT_BASE": mock_digest(base_name)},
        }
        dep = mocked.one("kubernetes:apps/v1:Deployment")
        assert dep.name == "us-east-agent-bellavista-reservations-deployment-reservations"
        container = dep.inputs["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == mock_digest(expected_name) != IMAGE_PLACEHOLDER
        assert dep.inputs["spec"]["replicas"] == 1
        dep_request = next(r for r in mocked.requests if r.type == "kubernetes:apps/v1:Deployment")
        assert list(dep_request.ignoreChanges) == ["spec.replicas"]
        for other in mocked.requests:
            if other.type != "kubernetes:apps/v1:Deployment":
                assert "spec.replicas" not in list(other.ignoreChanges)
        kinds = sorted(r.typ for r in mocked.resources if r.custom)
        assert kinds == sorted(
            [
                "docker:index/image:Image",
                "docker:index/image:Image",
                "kubernetes:apps/v1:Deployment",
                "kubernetes:policy/v1:PodDisruptionBudget",
                "kubernetes:monitoring.coreos.com/v1:PodMonitor",
                "kubernetes:keda.sh/v1alpha1:ScaledObject",
            ]
        )
        assert outputs == [
            "reservations", "vox-t-bellavista", "bellavista-reservations", mock_digest(expected_name)
        ]
        component = mocked.one("voxplane:agents:AgentPool")
        assert component.custom is False

    outputs = pulumi.Output.all(pool.deployment_name, pool.namespace, pool.agent_name, pool.image)
    return pulumi.Output.all(outputs, _registered(pool)).apply(lambda both: check(both[0]))


@pulumi.runtime.test
def test_prebuilt_image_is_used_as_is_without_a_build(mocked):
    """scheduler (code.image) registers no docker Image; the Deployment runs the manifest's image."""
    pool = _pool("scheduler", "eu-west", registry=None)

    def check(image):
        assert not [r for r in mocked.resources if r.typ == "docker:index/image:Image"]
        dep = mocked.one("kubernetes:apps/v1:Deployment")
        assert dep.inputs["spec"]["template"]["spec"]["containers"][0]["image"] == _agent("scheduler").code.image
        assert image == _agent("scheduler").code.image

    return pulumi.Output.all(pool.image, _registered(pool)).apply(lambda both: check(both[0]))


@pulumi.runtime.test
def test_build_without_registry_names_the_config_key(mocked):
    """An agent that builds from source without `voxplane:imageRegistry` stops with a message naming that key."""
    with pytest.raises(pulumi.RunError, match="voxplane:imageRegistry"):
        _pool("reservations", "local", registry=None)


@pulumi.runtime.test
def test_secret_values_only_travel_wrapped_as_secrets(mocked):
    """Config secrets reach the engine only inside secret wrappers (the Secret's stringData), never in plain inputs."""
    pools = [_pool("support", "us-east"), _pool("scheduler", "eu-west")]

    def check(_):
        seen = {}
        for request in mocked.requests:
            for key in ("northwindOpenaiKey", "northwindFhirClientSecret"):
                hits = secret_wrapping(request, SECRETS[key])
                assert all(hits), f"{SECRETS[key]!r} unwrapped in {request.type} {request.name}"
                if hits:
                    seen.setdefault(key, []).append(request.type)
        # Each secret did travel — wrapped, in its agent's Secret — so the check above saw it.
        assert seen == {
            "northwindOpenaiKey": ["kubernetes:core/v1:Secret"],
            "northwindFhirClientSecret": ["kubernetes:core/v1:Secret"],
        }
        secrets = {r.name: r.inputs for r in mocked.resources if r.typ == "kubernetes:core/v1:Secret"}
        # The whole payload is one secret value on the wire.
        assert secrets["us-east-agent-northwind-support-secret-support-secrets"]["stringData"] == {
            SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270",
            "value": {"VOXPLANE_LLM_API_KEY": SECRETS["northwindOpenaiKey"]},
        }

    return _registered(*pools).apply(check)


@pulumi.runtime.test
def test_render_only_stack_names_the_content_hash_tag_without_building(mocked):
    """With build_images=False (the `local` stack renders YAML, no Docker engine) no Image is
    registered and the Deployment runs <registry>/<tenant>-<agent>:<folder hash>."""
    pool = _pool("reservations", "us-east", registry="localhost:5000/vox", build=False)
    base = build_context_hash(os.path.join(str(REPO), "agents/_platform"))
    tag = build_context_hash(os.path.join(str(REPO), "agents/reservations"), base=base)

    def check(image: str) -> None:
        assert image == f"localhost:5000/vox/bellavista-reservations:{tag}"
        assert not [res for res in mocked.resources if res.typ.startswith("docker:")]

    return pool.image.apply(check)
