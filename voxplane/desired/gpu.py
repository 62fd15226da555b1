"""A GPU node group: the Karpenter NodePool that provisions it, or (preprovisioned) the labels and
taints its existing nodes must carry, plus the placement every inference pod on it uses.

Facts (reference/inference.md §0.7, §4): the NVIDIA device plugin exposes the extended resource
`nvidia.com/gpu`; GPU Feature Discovery labels nodes `nvidia.com/gpu.product`, the portable GPU
selector across clouds. GPU pools are tainted `nvidia.com/gpu:NoSchedule`; GKE's
ExtendedResourceToleration plugin tolerates that for pods requesting GPUs, AKS has no such plugin
(Azure/AKS#1449), so pods always carry the toleration explicitly. Karpenter v1 NodePool fields:
`spec.template.spec.{requirements,taints,nodeClassRef,expireAfter,terminationGracePeriod}`,
`spec.disruption.{consolidationPolicy,consolidateAfter,budgets}`, `spec.limits` (any resource,
and `nodes` since Karpenter v1.7; older releases ignore that key).
"""

from __future__ import annotations

from typing import Any, Optional

from ..manifest.model import GpuNodeGroup, Region, Taint
from .common import (
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    LABEL_GPU_GROUP,
    K8sObject,
    labels,
    metadata,
    region_source,
)

#: Nodes are replaced after this long (fresh AMIs, drivers, kernels). Karpenter's own default.
EXPIRE_AFTER = "720h"
#: Upper bound on draining a GPU node (expiry, drift): after it Karpenter deletes the remaining
#: pods even if a PDB still blocks. Inference pods leave one at a time (PDB maxUnavailable 1) and
#: each replacement loads weights for minutes, so the bound is generous but finite.
TERMINATION_GRACE_PERIOD = "2h"
#: At most one GPU node of a group is voluntarily disrupted at a time: one node can hold several
#: replicas, and each takes minutes to come back.
DISRUPTION_BUDGET_NODES = "1"

#: Provider-specific GPU labels Karpenter offers per node class API group: (count, name,
#: manufacturer). Karpenter core has no GPU label, so other providers fall back to the GPU limit
#: and the pods' `nvidia.com/gpu` requests, which Karpenter fits against instance types.
_PROVIDER_GPU_LABELS: dict[str, tuple[str, Optional[str], str]] = {
    # aws/karpenter-provider-aws docs/concepts/scheduling.md (well-known labels).
    "karpenter.k8s.aws": (
        "karpenter.k8s.aws/instance-gpu-count",
        "karpenter.k8s.aws/instance-gpu-name",
        "karpenter.k8s.aws/instance-gpu-manufacturer",
    ),
    # EKS Auto Mode: same NodePool API, `eks.amazonaws.com/` label keys (reference §4.2).
    "eks.amazonaws.com": (
        "eks.amazonaws.com/instance-gpu-count",
        "eks.amazonaws.com/instance-gpu-name",
        "eks.amazonaws.com/instance-gpu-manufacturer",
    ),
    # Azure/karpenter-provider-azure: sku-gpu-name values are Azure's own spelling; not derived.
    "karpenter.azure.com": (
        "karpenter.azure.com/sku-gpu-count",
        None,
        "karpenter.azure.com/sku-gpu-manufacturer",
    ),
}


# --- names -------------------------------------------------------------------------------------


def node_pool_name(region: Region, group: GpuNodeGroup) -> str:
    """`<prefix>-<group>`: NodePools are cluster-scoped, so the prefix keeps regions' pools apart."""
    return f"{region.kubernetes.namespace_prefix}-{group.name}"


def aws_gpu_name(product: str) -> Optional[str]:
    """AWS's `instance-gpu-name` for a GFD product: `NVIDIA-H100-80GB-HBM3` -> `h100`,
    `NVIDIA-L40S` -> `l40s`, `Tesla-T4` -> `t4`. None when the product has no model token."""
    rest = product
    for prefix in ("NVIDIA-", "Tesla-"):
        if rest.startswith(prefix):
            rest = rest[len(prefix):]
            break
    token = rest.split("-", 1)[0].lower()
    return token or None


# --- pod placement -------------------------------------------------------------------------------


def gpu_affinity(group: GpuNodeGroup) -> dict[str, Any]:
    """Required node affinity: the group's GPU product (GFD label) on the group's nodes."""
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": GPU_PRODUCT_LABEL, "operator": "In", "values": [group.gpu_product]},
                            {"key": LABEL_GPU_GROUP, "operator": "In", "values": [group.name]},
                        ]
                    }
                ]
            }
        }
    }


def gpu_tolerations(group: GpuNodeGroup) -> list[dict[str, Any]]:
    """`nvidia.com/gpu` Exists NoSchedule always (no cluster may be relied on to add it), then
    every other taint of the group."""
    out: list[dict[str, Any]] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    for taint in group.taints:
        if taint.key == GPU_RESOURCE and taint.effect == "NoSchedule":
            continue  # covered by the Exists toleration above, whatever its value
        toleration: dict[str, Any] = {"key": taint.key, "operator": "Equal" if taint.value is not None else "Exists"}
        if taint.value is not None:
            toleration["value"] = taint.value
        toleration["effect"] = taint.effect
        out.append(toleration)
    return out


# --- what nodes must carry -------------------------------------------------------------------------


def node_labels(group: GpuNodeGroup) -> dict[str, str]:
    """Labels the group's nodes carry: voxplane's group label, and the GFD product label (set by
    GFD on every GPU node; Karpenter also stamps it at launch so it can plan for pods that select
    it before GFD runs)."""
    return {LABEL_GPU_GROUP: group.name, GPU_PRODUCT_LABEL: group.gpu_product}


def node_requirements(region: Region, group: GpuNodeGroup) -> dict[str, Any]:
    """What a node of the group must look like for inference pods to land on it. For
    `preprovisioned` groups this is the operator's checklist (stack output, README); for
    `karpenter` groups it is what the NodePool produces."""
    taint_args = [f"{t.key}={t.value}:{t.effect}" if t.value is not None else f"{t.key}:{t.effect}" for t in group.taints]
    label_args = [f"{k}={v}" for k, v in node_labels(group).items() if k != GPU_PRODUCT_LABEL]
    return {
        "group": group.name,
        "provisioner": group.provisioner,
        "node_pool": node_pool_name(region, group) if group.provisioner == "karpenter" else "",
        "labels": node_labels(group),
        "taints": [_taint(t) for t in group.taints],
        "allocatable": {GPU_RESOURCE: str(group.gpus_per_node)},
        "nodes": {"min": group.min_nodes, "max": group.max_nodes},
        # GFD sets nvidia.com/gpu.product itself; the group label and taints are the operator's.
        "commands": [f"kubectl label node <node> {' '.join(label_args)}"]
        + ([f"kubectl taint node <node> {' '.join(taint_args)}"] if taint_args else []),
    }


# --- Karpenter ---------------------------------------------------------------------------------------


def build_gpu_group(region: Region, group: GpuNodeGroup) -> list[K8sObject]:
    """The objects a GPU node group needs: a Karpenter NodePool, or nothing when preprovisioned
    (see `node_requirements` for what those nodes must carry)."""
    if group.provisioner != "karpenter":
        return []
    return [_node_pool(region, group)]


def _node_pool(region: Region, group: GpuNodeGroup) -> K8sObject:
    k = group.karpenter
    lab = labels(region, name=node_pool_name(region, group), component="gpu-node-group", instance=group.name)
    spec: dict[str, Any] = {
        "template": {
            # Template labels become node labels and count as requirements, so Karpenter can plan
            # for pods whose affinity selects them (it rejects keys with no known values).
            "metadata": {"labels": node_labels(group)},
            "spec": {
                "nodeClassRef": {"group": k.node_class_group, "kind": k.node_class_kind, "name": k.node_class},
                "requirements": _requirements(group),
                "taints": [_taint(t) for t in group.taints],
                "expireAfter": EXPIRE_AFTER,
                # Without it, a pod whose PDB never allows eviction would hold an expired node forever.
                "terminationGracePeriod": TERMINATION_GRACE_PERIOD,
            },
        },
        "disruption": {
            # Never consolidate a node running a model: moving a replica means reloading weights.
            "consolidationPolicy": "WhenEmpty",
            "consolidateAfter": k.consolidate_after,
            "budgets": [{"nodes": DISRUPTION_BUDGET_NODES}],
        },
        # min_nodes has no NodePool field (dynamic pools provision for pending pods); the models'
        # min_replicas keep nodes warm.
        "limits": {GPU_RESOURCE: str(group.max_nodes * group.gpus_per_node), "nodes": str(group.max_nodes)},
    }
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": metadata(node_pool_name(region, group), None, lab, region_source(region)),
        "spec": spec,
    }


def _requirements(group: GpuNodeGroup) -> list[dict[str, Any]]:
    reqs: list[dict[str, Any]] = [
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": list(group.karpenter.capacity_types)},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
    ]
    provider = _PROVIDER_GPU_LABELS.get(group.karpenter.node_class_group)
    if provider is not None:
        count_key, name_key, manufacturer_key = provider
        reqs.append({"key": manufacturer_key, "operator": "In", "values": ["nvidia"]})
        gpu_name = aws_gpu_name(group.gpu_product) if name_key else None
        if name_key and gpu_name:
            # Otherwise any instance with the right GPU count would do (an A10G box for an H100 group).
            reqs.append({"key": name_key, "operator": "In", "values": [gpu_name]})
        reqs.append({"key": count_key, "operator": "In", "values": [str(group.gpus_per_node)]})
    return reqs


def _taint(taint: Taint) -> dict[str, Any]:
    out: dict[str, Any] = {"key": taint.key}
    if taint.value is not None:
        out["value"] = taint.value
    out["effect"] = taint.effect
    return out
