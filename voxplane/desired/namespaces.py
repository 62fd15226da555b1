"""Region-wide objects that no single component owns: the system and inference namespaces."""

from __future__ import annotations

from ..manifest.model import Region
from .common import K8sObject, inference_namespace, labels, namespace, region_source, system_namespace


def system_namespace_labels(region: Region) -> dict[str, str]:
    return labels(region, name="livekit", component="system")


def inference_namespace_labels(region: Region) -> dict[str, str]:
    return labels(region, name="inference", component="inference")


def build_namespaces(region: Region) -> list[K8sObject]:
    """`<prefix>-system` holds LiveKit (SFU, SIP, Redis); it runs host-network pods, so Pod Security
    is `privileged` there and `restricted` everywhere else. `<prefix>-inference` holds the models."""
    system = namespace(system_namespace(region), system_namespace_labels(region), pod_security="privileged")
    # Every model server runs as a fixed non-root uid with no privilege and a read-only root
    # filesystem (inference.py), so the inference namespace enforces `restricted` too.
    inference = namespace(inference_namespace(region), inference_namespace_labels(region))
    for ns in (system, inference):
        ns["metadata"]["annotations"] = region_source(region)
    return [system, inference]
