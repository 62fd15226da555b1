"""A tenant in a region: namespace, default-deny network policy with explicit egress, quota,
limit range and the tenant's LiveKit API key Secret.

The key is the tenant's own (`tenant_api_key`): livekit-server does not know it, only the
gateway does (voxplane/gateway), which checks every request against the tenant's scope."""

from __future__ import annotations

from typing import Any, Sequence

from ..model import Agent, Region, Tenant
from .common import (
    AGENT_METRICS_PORT,
    K8sObject,
    MONITORING_NAMESPACE,
    PRIVATE_RANGES,
    SecretValue,
    inference_namespace,
    labels,
    metadata,
    namespace,
    secret,
    system_namespace,
    tenant_api_key,
    tenant_namespace,
)
from .gateway import GATEWAY_LISTEN_PORT, gateway_selector

LIVEKIT_SECRET = "livekit-api"


def build_tenant(region: Region, tenant: Tenant, agents: Sequence[Agent]) -> list[K8sObject]:
    """Objects of one tenant in `region`; `agents` are the tenant's agents deployed there."""
    ns = tenant_namespace(region, tenant.name)
    lab = labels(region, name="tenant", component="tenant", instance=tenant.name, tenant=tenant.name)
    return [
        namespace(ns, lab),
        _default_deny(ns, lab),
        _platform_access(region, ns, lab),
        *_provider_egress(ns, lab, agents),
        _quota(ns, lab, tenant),
        _limit_range(ns, lab),
        _api_key_secret(ns, lab, tenant.name),
    ]


def _default_deny(ns: str, lab: dict[str, str]) -> K8sObject:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata("default-deny", ns, lab),
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }


def _platform_access(region: Region, ns: str, lab: dict[str, str]) -> K8sObject:
    """What every agent needs: DNS, LiveKit signalling through the gateway, the SFU's media ports,
    the region's models, and Prometheus scraping the worker metrics."""
    ports = region.livekit.ports
    # Media goes straight to the SFU. It runs with host networking, so its pods have node IPs
    # that no podSelector matches: its media ports are allowed towards any address. Its API and
    # signalling port is not: tenants reach it only through the gateway.
    livekit_ports: list[dict[str, Any]] = [
        {"protocol": "TCP", "port": ports.rtc_tcp},
        {"protocol": "UDP", "port": ports.rtc_udp.start, "endPort": ports.rtc_udp.end},
    ]
    if region.livekit.turn.enabled:
        livekit_ports.append({"protocol": "UDP", "port": region.livekit.turn.udp_port})
    egress: list[dict[str, Any]] = [
        {
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        },
        {
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": system_namespace(region)}},
                    "podSelector": {"matchLabels": gateway_selector(region)}}],
            "ports": [{"protocol": "TCP", "port": GATEWAY_LISTEN_PORT}],
        },
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": livekit_ports},
    ]
    model_ports = sorted({m.port for m in region.models.values()})
    if model_ports:
        egress.append(
            {
                "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": inference_namespace(region)}},
                        "podSelector": {"matchLabels": {"app.kubernetes.io/component": "inference"}}}],
                "ports": [{"protocol": "TCP", "port": p} for p in model_ports],
            }
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata("allow-platform", ns, lab),
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": MONITORING_NAMESPACE}}}],
                    "ports": [{"protocol": "TCP", "port": AGENT_METRICS_PORT}],
                }
            ],
            "egress": egress,
        },
    }


def _provider_egress(ns: str, lab: dict[str, str], agents: Sequence[Agent]) -> list[K8sObject]:
    """HTTPS to the external providers the tenant's agents declare. NetworkPolicy cannot name
    hosts, so this admits public addresses on the providers' ports; the hosts are recorded in an
    annotation for FQDN-aware CNIs and for review."""
    endpoints: dict[str, int] = {}
    for agent in agents:
        for role in agent.inference.roles().values():
            if role.provider is not None:
                rest = role.provider.endpoint.split("://", 1)[1].split("/", 1)[0]
                port = int(rest.split(":", 1)[1]) if ":" in rest else 443
                endpoints[role.provider.host] = port
    if not endpoints:
        return []
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": metadata("allow-providers", ns, lab, {"voxplane.io/provider-hosts": ",".join(sorted(endpoints))}),
            "spec": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE_RANGES}}],
                        "ports": [{"protocol": "TCP", "port": p} for p in sorted(set(endpoints.values()))],
                    }
                ],
            },
        }
    ]


def _quota(ns: str, lab: dict[str, str], tenant: Tenant) -> K8sObject:
    q = tenant.quotas
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": metadata("tenant-quota", ns, lab),
        "spec": {"hard": {"requests.cpu": q.cpu, "requests.memory": q.memory, "limits.memory": q.memory, "pods": str(q.pods)}},
    }


def _limit_range(ns: str, lab: dict[str, str]) -> K8sObject:
    """Defaults for containers that state no resources, so the quota can account for them."""
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": metadata("tenant-defaults", ns, lab),
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
                    "default": {"memory": "512Mi"},
                }
            ]
        },
    }


def _api_key_secret(ns: str, lab: dict[str, str], tenant: str) -> K8sObject:
    key = tenant_api_key(tenant)
    return secret(LIVEKIT_SECRET, ns, lab, {"LIVEKIT_API_KEY": key, "LIVEKIT_API_SECRET": SecretValue("livekit-secret", key)})
