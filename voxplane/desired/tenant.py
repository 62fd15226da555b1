"""A tenant in a region: namespace, default-deny network policy with explicit egress, quota,
limit range and the tenant's LiveKit API key Secret.

The key is the tenant's own (`tenant_api_key`): livekit-server does not know it, only the
gateway does (voxplane/gateway), which checks every request against the tenant's scope."""

from __future__ import annotations

from typing import Any, Sequence

from ..manifest.model import Agent, Region, Tenant
from .common import (
    AGENT_METRICS_PORT,
    K8sObject,
    SecretValue,
    inference_namespace,
    labels,
    metadata,
    namespace,
    secret,
    selector,
    system_namespace,
    tenant_api_key,
    tenant_namespace,
)
from .gateway import GATEWAY_LISTEN_PORT, gateway_selector
from .inference import model_labels
from .network import default_deny, dns_egress, host_network_peers, internet_peer, monitoring_peer, namespace_peer, ports, rule
from .media import sfu_selector

LIVEKIT_SECRET = "livekit-api"


def build_tenant(region: Region, tenant: Tenant, agents: Sequence[Agent]) -> list[K8sObject]:
    """Objects of one tenant in `region`; `agents` are the tenant's agents deployed there."""
    ns = tenant_namespace(region, tenant.name)
    lab = labels(region, name="tenant", component="tenant", instance=tenant.name, tenant=tenant.name)
    return [
        namespace(ns, lab),
        default_deny(ns, lab),
        _platform_access(region, ns, lab, agents),
        *_provider_egress(ns, lab, agents),
        _quota(ns, lab, tenant),
        _limit_range(ns, lab),
        _api_key_secret(ns, lab, tenant.name),
    ]


def models_used(agents: Sequence[Agent]) -> list[str]:
    """The region models `agents` call (by name), sorted."""
    return sorted({spec.model for a in agents for spec in a.inference.roles().values() if spec.model is not None})


def _platform_access(region: Region, ns: str, lab: dict[str, str], agents: Sequence[Agent]) -> K8sObject:
    """What the tenant's agents need: DNS, LiveKit signalling through the gateway, the SFU's media
    ports at the SFU, the region models they use, and Prometheus scraping the worker metrics.

    Media goes straight to the SFU. It runs with host networking and advertises its node addresses
    as ICE candidates (`rtc.advertise_internal_ip`), so the media ports are allowed towards the SFU
    pods and the node ranges (`kubernetes.node_cidrs`) only, never the internet. No STUN or TURN:
    the SFU answers agents' connectivity checks at its node address directly (TURN is for clients
    behind firewalls; an agent's relay candidates would point at the public TURN address, which
    stays closed). Its API and signalling port is not allowed: tenants reach it only through the
    gateway."""
    p = region.livekit.ports
    egress: list[dict[str, Any]] = [
        dns_egress(),
        rule([namespace_peer(system_namespace(region), gateway_selector(region))], ports(("TCP", GATEWAY_LISTEN_PORT)),
             direction="egress"),
        rule(host_network_peers(region, sfu_selector(region)),
             ports(("TCP", p.rtc_tcp), ("UDP", p.rtc_udp.start, p.rtc_udp.end)), direction="egress"),
    ]
    for name in models_used(agents):
        model = region.models[name]
        egress.append(rule([namespace_peer(inference_namespace(region), selector(model_labels(region, model)))],
                           ports(("TCP", model.port)), direction="egress"))
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata("allow-platform", ns, lab),
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [rule([monitoring_peer(region)], ports(("TCP", AGENT_METRICS_PORT)), direction="ingress")],
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
                        "to": [internet_peer()],
                        "ports": [{"protocol": "TCP", "port": p} for p in sorted(set(endpoints.values()))],
                    }
                ],
            },
        }
    ]


#: LimitRange defaults for a container that states no ephemeral storage: scratch for logs and a
#: little /tmp, bounded, so even such a container cannot fill a shared node's disk.
DEFAULT_EPHEMERAL_REQUEST = "256Mi"
DEFAULT_EPHEMERAL_LIMIT = "1Gi"


def _quota(ns: str, lab: dict[str, str], tenant: Tenant) -> K8sObject:
    """CPU and memory requests, memory and local disk (ephemeral storage) requests and limits,
    pods. The disk quota keeps one tenant from filling the agent nodes it shares with others."""
    q = tenant.quotas
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": metadata("tenant-quota", ns, lab),
        "spec": {"hard": {
            "requests.cpu": q.cpu,
            "requests.memory": q.memory,
            "limits.memory": q.memory,
            "requests.ephemeral-storage": q.ephemeral_storage,
            "limits.ephemeral-storage": q.ephemeral_storage,
            "pods": str(q.pods),
        }},
    }


def _limit_range(ns: str, lab: dict[str, str]) -> K8sObject:
    """Defaults for containers that state no resources, so the quota can account for them (with
    an ephemeral-storage quota, a pod without disk requests and limits is refused otherwise)."""
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": metadata("tenant-defaults", ns, lab),
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "defaultRequest": {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": DEFAULT_EPHEMERAL_REQUEST},
                    "default": {"memory": "512Mi", "ephemeral-storage": DEFAULT_EPHEMERAL_LIMIT},
                }
            ]
        },
    }


def _api_key_secret(ns: str, lab: dict[str, str], tenant: str) -> K8sObject:
    key = tenant_api_key(tenant)
    return secret(LIVEKIT_SECRET, ns, lab, {"LIVEKIT_API_KEY": key, "LIVEKIT_API_SECRET": SecretValue("livekit-secret", key)})
