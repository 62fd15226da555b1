"""Dev values for the existing Secrets agent manifests name (`secrets: VAR: {secret: NAME, key: K}`):
in a cluster the platform team creates them (voxplane renders only what it owns); in the dev
cluster nobody would, and a pod naming a missing Secret never starts. So, once the tenant's
namespace exists, each missing Secret (or key) is created with a random dev value, labelled
`app.kubernetes.io/managed-by: voxplane-dev`. Nothing real is behind those values (a booking
API's token): a call that uses one fails as it would with a wrong token.

Run by the pod runner each few seconds; values are never logged.
"""

from __future__ import annotations

import base64
import secrets
from typing import Sequence

from ..desired.common import tenant_namespace
from ..manifest.model import Agent, Region
from .kubeclient import KubeClient

__all__ = ["MANAGED_BY", "ensure"]

MANAGED_BY = "voxplane-dev"


def wanted(region: Region, agents: Sequence[Agent]) -> dict[tuple[str, str], set[str]]:
    """(namespace, Secret name) -> keys, for every existing-Secret reference of the agents."""
    out: dict[tuple[str, str], set[str]] = {}
    for agent in agents:
        for ref in agent.secrets.values():
            if ref.secret and ref.key:
                out.setdefault((tenant_namespace(region, agent.tenant), ref.secret), set()).add(ref.key)
    return out


def ensure(kube: KubeClient, region: Region, agents: Sequence[Agent]) -> list[str]:
    """Create what is missing; returns `namespace/name key` of each value made."""
    made = []
    for (namespace, name), keys in sorted(wanted(region, agents).items()):
        if kube.get(f"/api/v1/namespaces/{namespace}") is None:
            continue  # the stack has not made the tenant's namespace yet
        current = kube.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
        missing = sorted(keys - set((current or {}).get("data") or {}))
        if not missing:
            continue
        data = {k: base64.b64encode(f"dev-{secrets.token_urlsafe(18)}".encode()).decode() for k in missing}
        if current is None:
            kube.request("POST", f"/api/v1/namespaces/{namespace}/secrets", body={
                "apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": data,
                "metadata": {"name": name, "namespace": namespace,
                             "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}}})
        else:
            kube.request("PATCH", f"/api/v1/namespaces/{namespace}/secrets/{name}", body={"data": data},
                         content_type="application/merge-patch+json")
        made += [f"{namespace}/{name} {k}" for k in missing]
    return made
