"""The media servers of a region's LiveKit deployment, the SFU (livekit-server) and the SIP bridge
(livekit-sip): their labels and selectors, and the host-network pod they both run as.

Here, not in sfu.py or sip.py, because three builders need them: the SFU and the SIP bridge build
their pods from these pieces, and Redis admits exactly these pods (its NetworkPolicy), while both
servers need Redis's address.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from ..manifest.model import NodePool, Region
from .common import LIVEKIT_SERVICE, RESTRICTED_CONTAINER, labels, placement, prune, restricted_pod, selector

#: Marks the objects of one LiveKit deployment (SFU, SIP, Redis): its Redis belongs to it alone.
LABEL_LIVEKIT = "voxplane.io/livekit"
LIVEKIT_DEPLOYMENT = "livekit"
SIP_NAME = "livekit-sip"


def sfu_labels(region: Region) -> dict[str, str]:
    lab = labels(region, name=LIVEKIT_SERVICE, component="sfu", version=region.livekit.version)
    lab[LABEL_LIVEKIT] = LIVEKIT_DEPLOYMENT
    return lab


def sfu_selector(region: Region) -> dict[str, str]:
    """The SFU pods' selector labels."""
    return selector(sfu_labels(region))


def sip_labels(region: Region) -> dict[str, str]:
    sip = region.sip
    assert sip is not None
    lab = labels(region, name=SIP_NAME, component="sip", version=sip.version)
    lab[LABEL_LIVEKIT] = LIVEKIT_DEPLOYMENT
    return lab


def sip_selector(region: Region) -> dict[str, str]:
    """The SIP bridge pods' selector labels."""
    return selector(sip_labels(region))


# --- the host-network pod (SFU and SIP bridge) ---------------------------------------------------


def host_port(name: str, port: int, protocol: str) -> dict[str, Any]:
    # With hostNetwork the API server sets hostPort = containerPort anyway; stating it keeps the
    # desired state equal to the live object. The hostPort is also what lets the scheduler refuse
    # a second pod on a node whose port is taken.
    return {"name": name, "containerPort": port, "hostPort": port, "protocol": protocol}


def media_strategy() -> dict[str, Any]:
    """Replace one pod at a time, never surge: a surge pod would need a free node (host ports), and
    the old pod keeps its node until its calls have drained."""
    return {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}


def media_pod_spec(
    pod_labels: Mapping[str, str],
    pool: Optional[NodePool],
    container: dict[str, Any],
    *,
    grace_seconds: int,
    ports: Sequence[Mapping[str, Any]],
    volumes: Optional[list[dict[str, Any]]] = None,
    service_account: str,
) -> dict[str, Any]:
    """A host-network pod, at most one per node, on `pool`, under its own ServiceAccount with no
    API token (neither livekit-server nor livekit-sip calls the Kubernetes API)."""
    return prune(
        {
            "serviceAccountName": service_account,
            "automountServiceAccountToken": False,
            "hostNetwork": True,
            # Host-network pods otherwise get the node's resolv.conf and cannot resolve Services.
            "dnsPolicy": "ClusterFirstWithHostNet",
            # Service links would inject variables such as LIVEKIT_PORT=tcp://10.0.0.1:7880 (from
            # the `livekit` Service); livekit-server reads every LIVEKIT_<KEY> variable as config
            # and would fail to parse it.
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": grace_seconds,
            # One pod per node, stated outright; the hostPorts enforce it as well.
            "affinity": {
                "podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {"labelSelector": {"matchLabels": selector(pod_labels)},
                         "topologyKey": "kubernetes.io/hostname"}
                    ]
                }
            },
            **placement(pool),
            "securityContext": pod_security(ports),
            "containers": [container],
            "volumes": volumes or None,
        }
    )


def _needs_privileged_port(ports: Sequence[Mapping[str, Any]]) -> bool:
    return any(p["containerPort"] < 1024 for p in ports)


def pod_security(ports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Non-root: host networking needs no privilege for ports >= 1024. A port below 1024 (TURN/TLS
    on 443 without a load balancer) needs root with only NET_BIND_SERVICE: a non-root process does
    not get added capabilities, and with host networking the unprivileged-port sysctl is the node's."""
    if _needs_privileged_port(ports):
        return {"runAsNonRoot": False, "runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}}
    return restricted_pod()


def container_security(ports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    if _needs_privileged_port(ports):
        return {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
            "runAsNonRoot": False,
            "seccompProfile": {"type": "RuntimeDefault"},
            "readOnlyRootFilesystem": True,
        }
    return {**RESTRICTED_CONTAINER, "readOnlyRootFilesystem": True}
