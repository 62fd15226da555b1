"""The gateway's rendered objects (issue #9): config from the manifests, keys only in a Secret,
a restricted Deployment with probes, Service, PDB, NetworkPolicy, PodMonitor, and tenants whose
pods reach LiveKit signalling only through it."""

from __future__ import annotations

import dataclasses
import json

import pytest

from voxplane.desired.common import (
    GATEWAY_KEY,
    GATEWAY_PORT,
    RESTRICTED_CONTAINER,
    SecretValue,
    gateway_internal_url,
    tenant_api_key,
)
from voxplane.desired.gateway import (
    ANNOTATION_KEYS_CHECKSUM,
    GATEWAY_LISTEN_PORT,
    GATEWAY_METRICS_PORT,
    build_gateway,
    gateway_selector,
)
from voxplane.desired.sfu import api_key_names
from voxplane.desired.tenant import LIVEKIT_SECRET, build_tenant
from voxplane.gateway.scope import GatewayConfig

from ._helpers import REGIONS, by_kind_and_name, project, region, validate_strict


def _objects(name: str) -> dict[tuple[str, str], dict]:
    return by_kind_and_name(build_gateway(region(name), project().agents_in(name)))


@pytest.mark.parametrize("name", REGIONS)
def test_every_object_passes_strict_validation(name: str) -> None:
    for obj in build_gateway(region(name), project().agents_in(name)):
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
    before = dep["spec"]["template"]["metadata"]["annotations"][ANNOTATION_KEYS_CHECKSUM]
    extra = dict(r.tenants)
    extra["acme"] = dataclasses.replace(next(iter(r.tenants.values())), name="acme")
    after = by_kind_and_name(build_gateway(dataclasses.replace(r, tenants=extra), project().agents_in("us-east")))
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
