"""The lost-agent recovery controller of a region (voxplane/controllers/recovery): livekit-server's
webhooks tell it when a participant leaves a room; when the one that left is a call's agent that
did not end the call (its worker died) and the caller is still there, it dispatches the agent again.

Objects: its ConfigMap (the tenants' agents and rooms, as the gateway's scopes; no secret), a
Secret with its own LiveKit key's secret, Deployment, Service (the webhook URL livekit-server's
config names, livekit_config.webhook), PDB, NetworkPolicy and PodMonitor.

Least privilege: it holds one key of its own, `vx-recovery`, derived from the root secret like the
others. livekit-server scopes nothing per key (any key it knows may do anything), so what limits
the key is where it lives: only this pod, on the SFU's media pool (platform code only, never a
tenant node, like the gateway and Redis), with no Kubernetes API token, reaching only DNS and
livekit-server's API port, reachable only from the SFU (webhooks) and Prometheus; and what it signs:
livekit-api mints a token per call holding only that call's grant (`roomList`, or `roomAdmin` on
the one room). It never holds the admin key, the gateway's or a tenant's.

One replica, replaced with `Recreate`: recovery's "once" rests on one process deciding each room's
losses in turn (the record on the dispatch makes a repeated event a no-op, not two racing
processes). While it restarts, livekit-server keeps and retries the events it could not deliver
(retries with backoff, events kept 30 s: protocol webhook/resource_url_notifier.go).
"""

from __future__ import annotations

from typing import Sequence

from .. import __version__
from ..controllers.recovery.config import Config, TenantRooms
from ..manifest.model import Agent, Region
from .common import (
    ANNOTATION_CONFIG_CHECKSUM,
    K8sObject,
    RECOVERY_KEY,
    RECOVERY_SERVICE,
    RECOVERY_WEBHOOK_PORT,
    RESTRICTED_CONTAINER,
    SecretValue,
    checksum,
    config_map,
    labels,
    livekit_internal_url,
    metadata,
    pdb,
    placement,
    pod_monitor,
    region_source,
    restricted_pod,
    secret,
    secret_fingerprint,
    selector,
    service,
    system_namespace,
)
from .gateway import tenant_scopes
from .media import sfu_selector
from .network import dns_egress, host_network_peers, monitoring_peer, network_policy, ports, rule

COMPONENT = "recovery"
#: The image's repository under the stack's `voxplane:imageRegistry`; the stack builds it from the
#: controller package (voxplane/components/recovery.py).
REPOSITORY = "voxplane-recovery"
METRICS_PORT = 9104
CONFIG_DIR = "/etc/voxplane-recovery"
CONFIG_FILE = "config.json"
KEYS_SECRET = "agent-recovery-key"
KEY_FILE = f"{CONFIG_DIR}/keys/{RECOVERY_KEY}"
#: Times one call's agent is dispatched again (each loss once): an agent program that dies on
#: every call is not dispatched forever.
MAX_ATTEMPTS = 3
#: Seconds a call to livekit-server may take before the webhook is answered 503 (and sent again).
REQUEST_TIMEOUT_SECONDS = 5.0
#: The process exits within seconds of SIGTERM (it holds no call); the grace period bounds it.
GRACE_SECONDS = 15
EPHEMERAL_STORAGE = "64Mi"


def recovery_labels(region: Region) -> dict[str, str]:
    return labels(region, name=RECOVERY_SERVICE, component=COMPONENT, version=__version__)


def recovery_selector(region: Region) -> dict[str, str]:
    """The controller pods' selector labels (the SFU's NetworkPolicy lets webhooks reach them)."""
    return selector(recovery_labels(region))


def recovery_config(region: Region, agents: Sequence[Agent]) -> Config:
    """What the ConfigMap holds: livekit-server's URL, the controller's key (name and file), and
    every tenant's agents and rooms, as the gateway's scopes say (tenant_scopes)."""
    upstream = "http://" + livekit_internal_url(region).split("://", 1)[1]
    tenants = {name: TenantRooms(name=name, agents=scope.agents, room_prefixes=scope.room_prefixes, rooms=scope.rooms)
               for name, scope in tenant_scopes(region, agents).items()}
    return Config(livekit_url=upstream, api_key=RECOVERY_KEY, key_file=KEY_FILE, tenants=tenants,
                  max_attempts=MAX_ATTEMPTS, listen_port=RECOVERY_WEBHOOK_PORT, metrics_port=METRICS_PORT,
                  request_timeout_seconds=REQUEST_TIMEOUT_SECONDS)


def build_recovery(region: Region, agents: Sequence[Agent], *, image: str) -> list[K8sObject]:
    """ConfigMap, key Secret, Deployment, Service, PDB, NetworkPolicy and PodMonitor; the
    Deployment runs `image` (the component passes the image it builds from the controller package)."""
    ns = system_namespace(region)
    lab = recovery_labels(region)
    text = recovery_config(region, agents).to_json()
    src = region_source(region)
    return [
        config_map(RECOVERY_SERVICE, ns, lab, {CONFIG_FILE: text}, src),
        secret(KEYS_SECRET, ns, lab, {RECOVERY_KEY: SecretValue("livekit-secret", RECOVERY_KEY)}, src),
        _deployment(region, ns, lab, text, image),
        service(RECOVERY_SERVICE, ns, lab, [("webhook", RECOVERY_WEBHOOK_PORT), ("metrics", METRICS_PORT)], src),
        pdb(RECOVERY_SERVICE, ns, lab),
        _network_policy(region, ns, lab),
        pod_monitor(RECOVERY_SERVICE, ns, lab, annotations=src),
    ]


def _deployment(region: Region, ns: str, lab: dict[str, str], config_text: str, image: str) -> K8sObject:
    container = {
        "name": "recovery",
        "image": image,
        "command": ["python", "-m", "voxplane.controllers.recovery", "serve", "--config", f"{CONFIG_DIR}/{CONFIG_FILE}"],
        "ports": [
            {"name": "webhook", "containerPort": RECOVERY_WEBHOOK_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 5, "failureThreshold": 2},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10, "timeoutSeconds": 3,
                          "failureThreshold": 3},
        # Local disk: logs only (read-only root filesystem, no scratch volume).
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi", "ephemeral-storage": EPHEMERAL_STORAGE},
                      "limits": {"memory": "128Mi", "ephemeral-storage": EPHEMERAL_STORAGE}},
        "securityContext": {**RESTRICTED_CONTAINER, "readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
    }
    pod_spec = {
        # It never calls the Kubernetes API.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": GRACE_SECONDS,
        "securityContext": restricted_pod(),
        # It holds a key livekit-server knows: never on a node where tenant code runs (the agents'
        # pool); the SFU's media pool runs platform code only.
        **placement(region.livekit.node_pool),
        "containers": [container],
        "volumes": [
            {
                "name": "config",
                "projected": {
                    "defaultMode": 0o440,
                    "sources": [
                        {"configMap": {"name": RECOVERY_SERVICE, "items": [{"key": CONFIG_FILE, "path": CONFIG_FILE}]}},
                        {"secret": {"name": KEYS_SECRET,
                                    "items": [{"key": RECOVERY_KEY, "path": f"keys/{RECOVERY_KEY}"}]}},
                    ],
                },
            }
        ],
    }
    annotations = {
        ANNOTATION_CONFIG_CHECKSUM: checksum(config_text),
        # Its key's secret derives from the root secret: rotating it rolls the pod.
        **secret_fingerprint(SecretValue("livekit-secret", RECOVERY_KEY)),
        **region_source(region),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(RECOVERY_SERVICE, ns, lab, region_source(region)),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector(lab)},
            # Never two at once: each room's losses are decided by one process (module docstring).
            "strategy": {"type": "Recreate"},
            "template": {"metadata": {"labels": dict(lab), "annotations": annotations}, "spec": pod_spec},
        },
    }


def _network_policy(region: Region, ns: str, lab: dict[str, str]) -> K8sObject:
    """In: livekit-server's webhooks (the SFU: host networking, so its pods or the node addresses)
    on the webhook port, Prometheus on the metrics port. Out: DNS and livekit-server's API port."""
    sfu = host_network_peers(region, sfu_selector(region))
    return network_policy(
        RECOVERY_SERVICE, ns, lab, selector(lab),
        ingress=[
            rule(sfu, ports(("TCP", RECOVERY_WEBHOOK_PORT)), direction="ingress"),
            rule([monitoring_peer(region)], ports(("TCP", METRICS_PORT)), direction="ingress"),
        ],
        egress=[
            dns_egress(),
            rule(sfu, ports(("TCP", region.livekit.ports.http)), direction="egress"),
        ],
        annotations=region_source(region),
    )
