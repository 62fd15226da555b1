"""The SIP bridge (livekit-sip): builder facts for every example region and SIPBridge under mocks."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pulumi
import pytest
import yaml

from voxplane.components.secrets import SecretResolver
from voxplane.components.sip import SIPBridge, SIPBridgeArgs
from voxplane.desired.common import (
    ADMIN_KEY,
    ANNOTATION_CONFIG_CHECKSUM,
    ANNOTATION_SOURCE,
    NO_MESH,
    SecretValue,
    checksum,
    walk_secret_values,
)
from voxplane.desired.livekit_config import sip_config
from voxplane.desired.media import LABEL_LIVEKIT
from voxplane.desired.redis import redis_address
from voxplane.desired.sfu import build_sfu
from voxplane.desired.sip import build_sip, sip_uri
from voxplane.manifest.model import Region

from ._helpers import REGIONS, by_kind_and_name, by_name, desired, region, validate_strict


def objects(r: Region) -> dict[tuple[str, str], dict[str, Any]]:
    return by_kind_and_name(build_sip(r))


def deployment(r: Region) -> dict[str, Any]:
    return objects(r)[("Deployment", "livekit-sip")]


def pod(r: Region) -> dict[str, Any]:
    return deployment(r)["spec"]["template"]["spec"]


def container(r: Region) -> dict[str, Any]:
    (c,) = pod(r)["containers"]
    return c


def env(r: Region) -> dict[str, dict[str, Any]]:
    return by_name(container(r)["env"])


@pytest.mark.parametrize("name", REGIONS)
def test_every_object_passes_strict_schema(name):
    """Every SIP object is a valid Kubernetes 1.34 object (strict: no unknown fields)."""
    objs = objects(region(name))
    assert sorted(objs) == [
        ("ConfigMap", "livekit-sip-config"),
        ("Deployment", "livekit-sip"),
        ("NetworkPolicy", "livekit-sip"),
        ("PodDisruptionBudget", "livekit-sip"),
        ("PodMonitor", "livekit-sip"),
        ("Secret", "livekit-sip-api"),
        ("ServiceAccount", "livekit-sip"),
    ]
    for obj in objs.values():
        validate_strict(obj)
        assert obj["metadata"]["labels"][LABEL_LIVEKIT] == "livekit"
        assert obj["metadata"]["namespace"] == "vox-system"


def test_no_sip_section_builds_nothing():
    """A region without `sip` gets no SIP objects."""
    assert build_sip(dataclasses.replace(region("us-east"), sip=None)) == []


def test_sip_config_us_east_exact():
    """The SIP config: in-cluster ws_url, the SFU's Redis, ports, "start-end" RTP range, external IP, log level."""
    r = region("us-east")
    assert sip_config(r, redis_address=redis_address(r), ws_url="ws://livekit.vox-system.svc.cluster.local:7880") == {
        "ws_url": "ws://livekit.vox-system.svc.cluster.local:7880",
        "redis": {"address": "livekit-redis.vox-system.svc.cluster.local:6379"},
        "sip_port": 5060,
        "rtp_port": "10000-20000",
        "health_port": 8080,
        "prometheus_port": 6790,
        "use_external_ip": True,
        "logging": {"level": "info"},
    }


@pytest.mark.parametrize("name", REGIONS)
def test_same_redis_as_the_sfu(name):
    """The bridge's Redis address is the SFU's (SIP and server talk psrpc over it)."""
    r = region(name)
    sip_cfg = yaml.safe_load(objects(r)[("ConfigMap", "livekit-sip-config")]["data"]["config.yaml"])
    sfu_cfg = yaml.safe_load(next(o for o in build_sfu(r) if o["kind"] == "ConfigMap")["data"]["config.yaml"])
    assert sip_cfg["redis"]["address"] == sfu_cfg["redis"]["address"] == redis_address(r)


@pytest.mark.parametrize("name", REGIONS)
def test_config_map_has_no_secrets(name):
    """ConfigMap livekit-sip-config holds no api_key/api_secret, no keys, no secret marker."""
    cm = objects(region(name))[("ConfigMap", "livekit-sip-config")]
    text = cm["data"]["config.yaml"]
    for forbidden in ("api_key", "api_secret", "keys", ADMIN_KEY):
        assert forbidden not in text
    assert list(walk_secret_values(cm)) == []


@pytest.mark.parametrize("name", REGIONS)
def test_api_credentials_from_secret(name):
    """LIVEKIT_API_KEY/SECRET come from Secret livekit-sip-api: the admin key plain, its secret a SecretValue."""
    r = region(name)
    secret = objects(r)[("Secret", "livekit-sip-api")]
    assert secret["stringData"] == {
        "LIVEKIT_API_KEY": ADMIN_KEY,
        "LIVEKIT_API_SECRET": SecretValue("livekit-secret", ADMIN_KEY),
    }
    e = env(r)
    for var in ("LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        assert e[var] == {"name": var, "valueFrom": {"secretKeyRef": {"name": "livekit-sip-api", "key": var}}}


def test_config_body_from_config_map():
    """An external Redis without a password: SIP_CONFIG_BODY is read from the ConfigMap."""
    eu = region("eu-west")
    open_redis = dataclasses.replace(eu, livekit=dataclasses.replace(eu.livekit, redis=dataclasses.replace(eu.livekit.redis, password=None)))
    assert env(open_redis)["SIP_CONFIG_BODY"] == {
        "name": "SIP_CONFIG_BODY",
        "valueFrom": {"configMapKeyRef": {"name": "livekit-sip-config", "key": "config.yaml"}},
    }


def test_in_cluster_redis_password_reaches_sip_by_reference():
    """us-east (in-cluster Redis): the derived password from livekit-redis-auth is declared before
    SIP_CONFIG_BODY, whose inline body holds only $(REDIS_PASSWORD)."""
    r = region("us-east")
    names = [e["name"] for e in container(r)["env"]]
    assert names.index("REDIS_PASSWORD") < names.index("SIP_CONFIG_BODY")
    assert env(r)["REDIS_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": "livekit-redis-auth", "key": "password"}}
    assert json.loads(env(r)["SIP_CONFIG_BODY"]["value"])["redis"]["password"] == "$(REDIS_PASSWORD)"


def test_redis_password_is_a_kubelet_reference():
    """eu-west: REDIS_PASSWORD from the Secret is declared before SIP_CONFIG_BODY, which holds only $(REDIS_PASSWORD)."""
    r = region("eu-west")
    names = [e["name"] for e in container(r)["env"]]
    assert names.index("REDIS_PASSWORD") < names.index("SIP_CONFIG_BODY")
    assert env(r)["REDIS_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": "livekit-redis", "key": "password"}}
    body = json.loads(env(r)["SIP_CONFIG_BODY"]["value"])
    assert body["redis"] == {"address": "redis-livekit.eu-west.internal:6379", "password": "$(REDIS_PASSWORD)"}
    assert body == yaml.safe_load(objects(r)[("ConfigMap", "livekit-sip-config")]["data"]["config.yaml"])


@pytest.mark.parametrize("name", REGIONS)
def test_host_network_one_per_node(name):
    """hostNetwork + ClusterFirstWithHostNet, anti-affinity on hostname, hostPort on the SIP port (UDP and TCP)."""
    r = region(name)
    spec = pod(r)
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert spec["enableServiceLinks"] is False
    (term,) = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == deployment(r)["spec"]["selector"]["matchLabels"]
    ports = {p["name"]: p for p in container(r)["ports"]}
    assert ports["sip-udp"] == {"name": "sip-udp", "containerPort": 5060, "hostPort": 5060, "protocol": "UDP"}
    assert ports["sip-tcp"] == {"name": "sip-tcp", "containerPort": 5060, "hostPort": 5060, "protocol": "TCP"}
    assert deployment(r)["spec"]["replicas"] == r.sip.replicas


def test_sip_node_pool_placement():
    """us-east SIP pods select the sip pool and tolerate the media taint."""
    spec = pod(region("us-east"))
    assert spec["nodeSelector"] == {"voxplane.io/pool": "sip"}
    assert spec["tolerations"] == [
        {"key": "voxplane.io/media", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
    ]


@pytest.mark.parametrize("name", REGIONS)
def test_readiness_only_on_health_port(name):
    """Readiness GET / on health_port (429 busy = not ready); no liveness probe, so load never restarts a pod with calls."""
    c = container(region(name))
    assert c["readinessProbe"]["httpGet"] == {"path": "/", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]}["health"] == 8080
    assert "livenessProbe" not in c


def test_annotations_drain_strategy_pdb():
    """Mesh off, config checksum, source; grace = drain_seconds (10800 default); one at a time; PDB."""
    r = region("us-east")
    tmpl = deployment(r)["spec"]["template"]
    ann = tmpl["metadata"]["annotations"]
    for k, v in NO_MESH.items():
        assert ann[k] == v
    cfg = yaml.safe_load(objects(r)[("ConfigMap", "livekit-sip-config")]["data"]["config.yaml"])
    assert ann[ANNOTATION_CONFIG_CHECKSUM] == checksum(cfg)
    assert ann[ANNOTATION_SOURCE] == "regions/us-east.yaml"
    assert tmpl["spec"]["terminationGracePeriodSeconds"] == 10800
    assert pod(region("local"))["terminationGracePeriodSeconds"] == 300
    assert deployment(r)["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}
    pdb = objects(r)[("PodDisruptionBudget", "livekit-sip")]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment(r)["spec"]["selector"]["matchLabels"]


def test_image_security_and_resources():
    """Image <image>:<version>; non-root, no escalation, capabilities dropped; resources from the region."""
    r = region("local")
    c = container(r)
    assert c["image"] == "livekit/sip:v1.11.0"
    assert pod(r)["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi", "ephemeral-storage": "2Gi"},
                              "limits": {"memory": "512Mi", "ephemeral-storage": "2Gi"}}


def test_sip_uri():
    """sip_uri is sip:<public_host>:<sip_port>."""
    assert sip_uri(region("us-east")) == "sip:sip.us-east.voice.example.com:5060"


# --- the component -----------------------------------------------------------------------------


@pulumi.runtime.test
def test_component_registers_bridge(mocked):
    """SIPBridge for us-east registers the Deployment (grace 10800), its Secret and ConfigMap, and outputs the SIP URI."""
    r = region("us-east")
    bridge = SIPBridge("us-east-sip", SIPBridgeArgs(region=r, objects=desired("us-east").sip, secrets=SecretResolver(r.name, [ADMIN_KEY])))

    def check(outputs):
        uri = outputs[0]
        types = sorted(res.typ for res in mocked.resources if res.typ.startswith("kubernetes:"))
        assert types == [
            "kubernetes:apps/v1:Deployment",
            "kubernetes:core/v1:ConfigMap",
            "kubernetes:core/v1:Secret",
            "kubernetes:core/v1:ServiceAccount",
            "kubernetes:monitoring.coreos.com/v1:PodMonitor",
            "kubernetes:networking.k8s.io/v1:NetworkPolicy",
            "kubernetes:policy/v1:PodDisruptionBudget",
        ]
        dep = next(res for res in mocked.resources if res.typ == "kubernetes:apps/v1:Deployment")
        assert dep.name == "us-east-sip-deployment-livekit-sip"
        assert dep.inputs["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 10800
        assert uri == "sip:sip.us-east.voice.example.com:5060"

    # Wait for every child's registration before looking at the recorder.
    return pulumi.Output.all(bridge.sip_uri, *[child.id for child in bridge.children.values()]).apply(check)
