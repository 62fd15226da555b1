"""What a region runs right now: per workload desired/ready pods and the nodes they landed on
(Kubernetes API, one list call per kind), and the LiveKit objects voxplane owns (LiveKit API).

Read-only. Objects are selected by voxplane's labels (`managed-by: voxplane`, `part-of: <region>`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from .desired.common import MANAGED_BY


@dataclass
class Workload:
    namespace: str
    kind: str
    name: str
    component: str
    desired: int
    ready: int
    nodes: list[str] = field(default_factory=list)
    autoscaler: str = ""


@dataclass
class LiveKitObject:
    kind: str
    name: str
    owner: str
    detail: str


@dataclass
class RegionStatus:
    region: str
    workloads: list[Workload]
    livekit: list[LiveKitObject]
    livekit_error: Optional[str] = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def selector(region: str) -> str:
    return f"app.kubernetes.io/managed-by={MANAGED_BY},app.kubernetes.io/part-of={region}"


def kubernetes_workloads(api_client: Any, region: str) -> list[Workload]:
    """Deployments and StatefulSets of the region with their pods' nodes and ScaledObject bounds."""
    from kubernetes import client

    apps = client.AppsV1Api(api_client)
    core = client.CoreV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    sel = selector(region)
    pods_by_owner: dict[tuple[str, str], list[str]] = defaultdict(list)
    pods: list[Any] = core.list_pod_for_all_namespaces(label_selector=sel).items
    for pod in pods:
        instance = (pod.metadata.labels or {}).get("app.kubernetes.io/instance", "")
        pods_by_owner[(pod.metadata.namespace, instance)].append(pod.spec.node_name or "(pending)")
    scaling: dict[tuple[str, str], str] = {}
    try:
        listed: Any = custom.list_cluster_custom_object("keda.sh", "v1alpha1", "scaledobjects", label_selector=sel)
        for so in listed.get("items", []):
            spec = so.get("spec", {})
            target = spec.get("scaleTargetRef", {}).get("name", "")
            scaling[(so["metadata"]["namespace"], target)] = f"KEDA {spec.get('minReplicaCount', '?')}..{spec.get('maxReplicaCount', '?')}"
    except client.ApiException as exc:
        if exc.status != 404:  # no KEDA CRD in this cluster: no autoscaler column
            raise
    out: list[Workload] = []
    workloads: list[tuple[str, list[Any]]] = [
        ("Deployment", apps.list_deployment_for_all_namespaces(label_selector=sel).items),
        ("StatefulSet", apps.list_stateful_set_for_all_namespaces(label_selector=sel).items),
    ]
    for kind, items in workloads:
        for obj in items:
            meta = obj.metadata
            instance = (meta.labels or {}).get("app.kubernetes.io/instance", meta.name)
            out.append(Workload(
                namespace=meta.namespace, kind=kind, name=meta.name,
                component=(meta.labels or {}).get("app.kubernetes.io/component", ""),
                desired=obj.spec.replicas or 0, ready=(obj.status.ready_replicas or 0),
                nodes=sorted(pods_by_owner.get((meta.namespace, instance), [])),
                autoscaler=scaling.get((meta.namespace, meta.name), ""),
            ))
    out.sort(key=lambda w: (w.namespace, w.kind, w.name))
    return out


def livekit_objects(client: Any, region: str) -> list[LiveKitObject]:
    """Trunks and dispatch rules whose metadata marks them as the region's, voxplane-owned."""
    from .livekit.desired import parse_owner

    out: list[LiveKitObject] = []
    for trunk in client.list_trunks():
        owner, _ = parse_owner(trunk.metadata)
        if owner is not None and owner.region == region:
            out.append(LiveKitObject("SIPInboundTrunk", trunk.name, str(owner), ", ".join(trunk.numbers)))
    for rule in client.list_rules():
        owner, _ = parse_owner(rule.metadata)
        if owner is not None and owner.region == region:
            agents = ", ".join(a.agent_name for a in rule.room_config.agents) if rule.HasField("room_config") else ""
            out.append(LiveKitObject("SIPDispatchRule", rule.name, str(owner), f"agents: {agents}" if agents else ""))
    out.sort(key=lambda o: (o.kind, o.name))
    return out
