"""The authorizing LiveKit gateway of a region (voxplane/gateway): its config (tenant scopes from
the manifests, each tenant's limits from the region's `tenants.<name>.limits`), keys Secret,
Deployment, Service, PDB, NetworkPolicy and PodMonitor.

Tenants hold keys only the gateway knows; the gateway checks each request against the tenant's
scope and forwards it to livekit-server signed with the platform's gateway key. The tenant
NetworkPolicy (build/tenant.py) lets agent pods reach LiveKit's API and signalling port only
through the gateway; media still goes to the SFU nodes directly.
"""

from __future__ import annotations

from typing import Any, Sequence

from .. import __version__
from ..gateway.limits import Rate, TenantLimits
from ..gateway.scope import GatewayConfig, TenantScope
from ..manifest.model import Agent, GatewayLimits, RateLimit, Region
from .common import (
    ANNOTATION_CONFIG_CHECKSUM,
    GATEWAY_KEY,
    GATEWAY_PORT,
    GATEWAY_SERVICE,
    K8sObject,
    RESTRICTED_CONTAINER,
    SecretValue,
    checksum,
    config_map,
    env_value,
    labels,
    livekit_internal_url,
    metadata,
    pdb,
    placement,
    region_source,
    restricted_pod,
    secret,
    secret_fingerprint,
    selector,
    service,
    system_namespace,
    tenant_api_key,
)
from .network import dns_egress, host_network_peers, monitoring_peer, network_policy, ports, rule

#: The gateway's image repository under the stack's `voxplane:imageRegistry`; the stack builds it
#: from the gateway package (components/gateway.py).
GATEWAY_REPOSITORY = "voxplane-gateway"
#: Two replicas: a rollout or a node drain never leaves tenants without signalling.
GATEWAY_REPLICAS = 2
#: Container ports (unprivileged); the Service maps GATEWAY_PORT to the first.
GATEWAY_LISTEN_PORT = 8080
GATEWAY_METRICS_PORT = 9102
CONFIG_MAP = "livekit-gateway"
KEYS_SECRET = "livekit-gateway-keys"
CONFIG_DIR = "/etc/voxplane-gateway"
CONFIG_FILE = "config.json"
KEYS_DIR = f"{CONFIG_DIR}/keys"
#: Seconds the gateway keeps serving after SIGTERM while readiness fails (VOXPLANE_GATEWAY_DRAIN_SECONDS),
#: and the grace period around it. Open sockets then close; LiveKit clients resume signalling
#: through another replica with their refresh token and workers re-register, calls go on.
DRAIN_SECONDS = 10
GRACE_SECONDS = 30
#: Local disk of a gateway container.
EPHEMERAL_STORAGE = "256Mi"
#: Annotation: digest of the key *names* in the keys Secret (a new tenant rolls the pods).
ANNOTATION_KEYS_CHECKSUM = "voxplane.io/keys-checksum"


def gateway_labels(region: Region) -> dict[str, str]:
    return labels(region, name=GATEWAY_SERVICE, component="gateway", version=__version__)


def gateway_selector(region: Region) -> dict[str, str]:
    """The gateway pods' selector labels (tenant NetworkPolicies allow egress to them)."""
    return selector(gateway_labels(region))


def tenant_scopes(region: Region, agents: Sequence[Agent]) -> dict[str, TenantScope]:
    """Every tenant of `region` with what it owns there (`agents`: those deployed in the region)."""
    out: dict[str, TenantScope] = {}
    for name in sorted(region.tenants):
        mine = [a for a in agents if a.tenant == name and region.name in a.regions]
        prefixes = {name}
        rooms: set[str] = set()
        for agent in mine:
            tel = agent.telephony
            if tel is None:
                continue
            if tel.dispatch.kind == "direct":
                if tel.dispatch.room_name:
                    rooms.add(tel.dispatch.room_name)
            elif tel.dispatch.room_prefix:
                prefixes.add(tel.dispatch.room_prefix)
        out[name] = TenantScope(
            name=name,
            api_key=tenant_api_key(name),
            agents=frozenset(a.scoped_name for a in mine),
            room_prefixes=frozenset(prefixes),
            rooms=frozenset(rooms),
        )
    return out



def tenant_limits(limits: GatewayLimits) -> TenantLimits:
    """A tenant's manifest `limits` as the gateway reads them."""

    def rate(r: RateLimit) -> Rate:
        return Rate(r.per_second, r.burst)

    return TenantLimits(joins=rate(limits.joins), api_calls=rate(limits.api_calls),
                        worker_registrations=rate(limits.worker_registrations), connections=limits.connections)


def gateway_config(region: Region, agents: Sequence[Agent]) -> GatewayConfig:
    """What the ConfigMap holds: the upstream, the platform key's name, every tenant's scope and
    its limits."""
    upstream = "http://" + livekit_internal_url(region).split("://", 1)[1]
    return GatewayConfig(
        upstream=upstream,
        platform_key=GATEWAY_KEY,
        keys_dir=KEYS_DIR,
        tenants=tenant_scopes(region, agents),
        limits={name: tenant_limits(t.limits) for name, t in region.tenants.items()},
        listen_port=GATEWAY_LISTEN_PORT,
        metrics_port=GATEWAY_METRICS_PORT,
    )


def gateway_key_names(region: Region, agents: Sequence[Agent]) -> list[str]:
    """Keys in the gateway's Secret: the platform gateway key and each tenant's key."""
    config = gateway_config(region, agents)
    return sorted([GATEWAY_KEY] + [t.api_key for t in config.tenants.values()])


def build_gateway(region: Region, agents: Sequence[Agent], *, image: str) -> list[K8sObject]:
    """ConfigMap, keys Secret, Deployment, Service, PDB, NetworkPolicy and PodMonitor; the
    Deployment runs `image` (the component passes the image it builds from the gateway package)."""
    ns = system_namespace(region)
    lab = gateway_labels(region)
    config = gateway_config(region, agents)
    text = config.to_json()
    keys = gateway_key_names(region, agents)
    src = region_source(region)
    return [
        config_map(CONFIG_MAP, ns, lab, {CONFIG_FILE: text}, src),
        secret(KEYS_SECRET, ns, lab, {k: SecretValue("livekit-secret", k) for k in keys}, src),
        _deployment(region, ns, lab, text, keys, image),
        _service(ns, lab, src),
        pdb(GATEWAY_SERVICE, ns, lab),
        _network_policy(region, ns, lab),
        _pod_monitor(ns, lab),
    ]


def _deployment(region: Region, ns: str, lab: dict[str, str], config_text: str, keys: list[str],
                image: str) -> K8sObject:
    probe = {"httpGet": {"path": "/healthz", "port": "metrics"}}
    container = {
        "name": "gateway",
        "image": image,
        "command": ["python", "-m", "voxplane.gateway", "serve", "--config", f"{CONFIG_DIR}/{CONFIG_FILE}"],
        "env": [env_value("VOXPLANE_GATEWAY_DRAIN_SECONDS", str(DRAIN_SECONDS))],
        "ports": [
            {"name": "http", "containerPort": GATEWAY_LISTEN_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": GATEWAY_METRICS_PORT, "protocol": "TCP"},
        ],
        # Readiness fails during the drain after SIGTERM, so endpoints drop the pod first.
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 5,
                           "failureThreshold": 2},
        "livenessProbe": {**probe, "periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 3},
        # Local disk: logs only (read-only root filesystem, no scratch volume).
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi", "ephemeral-storage": EPHEMERAL_STORAGE},
                      "limits": {"memory": "256Mi", "ephemeral-storage": EPHEMERAL_STORAGE}},
        "securityContext": {**RESTRICTED_CONTAINER, "readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
    }
    pod_spec = {
        # The gateway never calls the Kubernetes API.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": GRACE_SECONDS,
        "securityContext": restricted_pod(),
        # It holds every tenant's key and the platform's: never on a node where tenant code runs
        # (the agents' pool); the SFU's media pool runs platform code only.
        **placement(region.livekit.node_pool),
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector(lab)},
            }
        ],
        "containers": [container],
        "volumes": [
            {
                "name": "config",
                "projected": {
                    "defaultMode": 0o440,
                    "sources": [
                        {"configMap": {"name": CONFIG_MAP, "items": [{"key": CONFIG_FILE, "path": CONFIG_FILE}]}},
                        {"secret": {"name": KEYS_SECRET, "items": [{"key": k, "path": f"keys/{k}"} for k in keys]}},
                    ],
                },
            }
        ],
    }
    annotations = {
        ANNOTATION_CONFIG_CHECKSUM: checksum(config_text),
        ANNOTATION_KEYS_CHECKSUM: checksum(keys),
        # Every key's secret derives from the root secret: rotating it rolls the pods.
        **secret_fingerprint(*(SecretValue("livekit-secret", k) for k in keys)),
        **region_source(region),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(GATEWAY_SERVICE, ns, lab, region_source(region)),
        "spec": {
            "replicas": GATEWAY_REPLICAS,
            "selector": {"matchLabels": selector(lab)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": dict(lab), "annotations": annotations}, "spec": pod_spec},
        },
    }


def _service(ns: str, lab: dict[str, str], src: dict[str, str]) -> K8sObject:
    """`gateway_internal_url`: agents' LIVEKIT_URL. A public load balancer for tenants' own clients
    (browsers, apps holding tenant-signed tokens) points here too, not at the SFU."""
    return service(GATEWAY_SERVICE, ns, lab, [("http", GATEWAY_PORT), ("metrics", GATEWAY_METRICS_PORT)], src)


def _network_policy(region: Region, ns: str, lab: dict[str, str]) -> K8sObject:
    """In: anyone on the API port (the gateway authenticates every request; tenants' clients may
    come from outside), Prometheus only on the metrics port. Out: DNS and livekit-server's API
    port, which is on the SFU's nodes (host networking: its pods, or node addresses)."""
    from .media import sfu_selector

    return network_policy(
        GATEWAY_SERVICE, ns, lab, selector(lab),
        ingress=[
            rule(None, ports(("TCP", GATEWAY_LISTEN_PORT)), direction="ingress"),
            rule([monitoring_peer(region)], ports(("TCP", GATEWAY_METRICS_PORT)), direction="ingress"),
        ],
        egress=[
            dns_egress(),
            rule(host_network_peers(region, sfu_selector(region)), ports(("TCP", region.livekit.ports.http)),
                 direction="egress"),
        ],
    )


def _pod_monitor(ns: str, lab: dict[str, str]) -> K8sObject:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": metadata(GATEWAY_SERVICE, ns, lab),
        "spec": {
            "selector": {"matchLabels": selector(lab)},
            "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
        },
    }
