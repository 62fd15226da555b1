"""The simulated nodes a region needs in the local control plane, derived from its manifest.

Each node pool the region declares becomes a set of kwok nodes carrying exactly the labels the
pool selects on and a taint for every toleration the pool declares (a pool whose pods tolerate a
taint is, by the manifest's own statement, a tainted pool). GPU node groups carry their group and
product labels, their taints and `nvidia.com/gpu` capacity. A small untainted `system` pool hosts
what selects no pool (nothing voxplane renders: cluster add-ons). Counts come from the manifest
too: the SFU's `nodes`, the SIP bridge's `replicas`, the GPU group's minimum (or what its models'
minimum replicas need), and for agent pools room for every agent's `min_workers` plus one rollout
surge.

Pure: model in, Node objects out. `voxplane.dev.cluster` applies them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable, Mapping, Sequence

from ..desired.common import GPU_RESOURCE, MANAGED_BY
from ..desired.gpu import node_labels
from ..manifest.model import Agent, NodePool, Region, Toleration
from ..manifest.quantity import parse_quantity

#: kwok manages nodes carrying this annotation (and only those: --manage-nodes-with-annotation-selector).
KWOK_ANNOTATION = {"kwok.x-k8s.io/node": "fake"}
#: Every simulated node carries this label, so the cluster can tell its own nodes from others.
LABEL_SIMULATED = "voxplane.io/simulated-node"
LABEL_POOL_ROLE = "voxplane.io/dev-pool"

_MEDIA_CPU, _MEDIA_MEMORY = 16, "64Gi"
_AGENT_CPU, _AGENT_MEMORY = 32, "128Gi"
_GPU_CPU, _GPU_MEMORY = 64, "512Gi"
_SYSTEM_CPU, _SYSTEM_MEMORY = 8, "32Gi"


@dataclass
class PoolPlan:
    """One simulated pool: `count` identical nodes."""

    name: str
    role: str
    count: int
    labels: dict[str, str]
    taints: list[dict[str, str]]
    cpu: int
    memory: str
    gpus: int = 0
    why: list[str] = field(default_factory=list)


def plan_pools(region: Region, agents: Sequence[Agent]) -> list[PoolPlan]:
    """Pools in a fixed order: media, SIP, agent pools, GPU groups, system."""
    pools: dict[tuple[tuple[str, str], ...], PoolPlan] = {}

    def pool_for(pool: NodePool, role: str, name: str, cpu: int, memory: str) -> PoolPlan:
        key = tuple(sorted(pool.selector.items()))
        if key not in pools:
            pools[key] = PoolPlan(name, role, 0, dict(pool.selector), _taints(pool.tolerations), cpu, memory)
        plan = pools[key]
        for taint in _taints(pool.tolerations):
            if taint not in plan.taints:
                plan.taints.append(taint)
        return plan

    lk = region.livekit
    media = pool_for(lk.node_pool, "media", "media", max(_MEDIA_CPU, math.ceil(2 * _cpu(lk.resources.cpu))), _MEDIA_MEMORY)
    media.count = max(media.count, lk.nodes)
    media.why.append(f"livekit.nodes: {lk.nodes} SFU pods, one per node")
    if region.sip is not None:
        sip = pool_for(region.sip.node_pool, "sip", "sip", _MEDIA_CPU, _MEDIA_MEMORY)
        sip.count = max(sip.count, region.sip.replicas)
        sip.why.append(f"sip.replicas: {region.sip.replicas} bridge pods, one per node")

    demand: dict[str, Decimal] = {}
    for agent in agents:
        pool = _agent_pool(region, agent)
        if pool is None:
            continue
        tenant = region.tenants.get(agent.tenant)
        name = f"agents-{agent.tenant}" if tenant is not None and tenant.node_pool is pool else "agents"
        plan = pool_for(pool, "agents", name, _AGENT_CPU, _AGENT_MEMORY)
        demand[plan.name] = demand.get(plan.name, Decimal(0)) + _cpu(agent.resources.cpu) * agent.scaling.min_workers
    for tenant in region.tenants.values():
        if tenant.isolation == "dedicated-nodes" and tenant.node_pool is not None:
            pool_for(tenant.node_pool, "agents", f"agents-{tenant.name}", _AGENT_CPU, _AGENT_MEMORY)
    if region.agents.node_pool is not None:
        pool_for(region.agents.node_pool, "agents", "agents", _AGENT_CPU, _AGENT_MEMORY)
    for plan in pools.values():
        if plan.role == "agents":
            # min_workers of every agent, plus one node of surge for a rolling update (maxUnavailable 0).
            plan.count = max(2, math.ceil(demand.get(plan.name, Decimal(0)) / _AGENT_CPU) + 1)
            plan.why.append(f"agents' min_workers need {demand.get(plan.name, Decimal(0))} CPU, plus one node of surge")

    out = list(pools.values())
    for group in region.gpu_node_groups.values():
        gpus_needed = sum(m.gpus_per_replica * m.min_replicas for m in region.models.values() if m.node_group == group.name)
        largest = max((m.gpus_per_replica for m in region.models.values() if m.node_group == group.name), default=1)
        # Whole replicas per node: a 1-GPU node holds one 1-GPU replica; an 8-GPU node eight.
        per_node = max(1, group.gpus_per_node // max(1, largest)) * largest
        count = max(group.min_nodes, math.ceil(gpus_needed / per_node), 1)
        out.append(PoolPlan(
            f"gpu-{group.name}", "gpu", min(count, max(group.max_nodes, 1)), node_labels(group),
            [_taint_dict(t.key, t.value, t.effect) for t in group.taints], _GPU_CPU, _GPU_MEMORY, group.gpus_per_node,
            [f"gpu_node_groups.{group.name}: {group.gpus_per_node} x {group.gpu_product} per node; "
             f"models need {gpus_needed} GPUs at min_replicas; min_nodes {group.min_nodes}"],
        ))
    out.append(PoolPlan("system", "system", 1, {}, [], _SYSTEM_CPU, _SYSTEM_MEMORY,
                        why=["pods that select no pool (cluster add-ons; everything voxplane renders selects a pool)"]))
    return out


def node_objects(region: Region, agents: Sequence[Agent]) -> list[dict[str, Any]]:
    """Node objects for every pool of `plan_pools`, named `<region>-<pool>-<i>`."""
    nodes = []
    zones = [f"{region.name}-a", f"{region.name}-b", f"{region.name}-c"]
    for plan in plan_pools(region, agents):
        for i in range(plan.count):
            name = f"{region.name}-{plan.name}-{i}"
            capacity = {"cpu": str(plan.cpu), "memory": plan.memory, "pods": "110", "ephemeral-storage": "200Gi"}
            if plan.gpus:
                capacity[GPU_RESOURCE] = str(plan.gpus)
            nodes.append({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {**KWOK_ANNOTATION, "node.alpha.kubernetes.io/ttl": "0"},
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "topology.kubernetes.io/zone": zones[i % len(zones)],
                        "type": "kwok",
                        "app.kubernetes.io/managed-by": MANAGED_BY,
                        LABEL_SIMULATED: "true",
                        LABEL_POOL_ROLE: plan.name,
                        **plan.labels,
                    },
                },
                "spec": {"taints": list(plan.taints)} if plan.taints else {},
                "status": {"capacity": capacity, "allocatable": dict(capacity)},
            })
    return nodes


def _agent_pool(region: Region, agent: Agent) -> NodePool | None:
    tenant = region.tenants.get(agent.tenant)
    if tenant is not None and tenant.isolation == "dedicated-nodes" and tenant.node_pool is not None:
        return tenant.node_pool
    return region.agents.node_pool


def _taints(tolerations: Iterable[Toleration]) -> list[dict[str, str]]:
    return [_taint_dict(t.key, t.value, t.effect or "NoSchedule") for t in tolerations]


def _taint_dict(key: str, value: str | None, effect: str) -> dict[str, str]:
    out = {"key": key, "effect": effect}
    if value is not None:
        out["value"] = value
    return out


def _cpu(text: str | None) -> Decimal:
    return parse_quantity(text) if text else Decimal(0)


def describe(plans: Sequence[PoolPlan]) -> Mapping[str, str]:
    """`pool -> "N nodes: why"`, for the `up` summary."""
    return {p.name: f"{p.count} node{'s' if p.count != 1 else ''} ({'; '.join(p.why)})" for p in plans}
