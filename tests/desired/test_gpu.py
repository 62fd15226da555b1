"""GPU node groups: the Karpenter NodePool of every karpenter group in the example regions, what
preprovisioned groups document instead, the GPU placement pods use, and the GPUNodeGroup component
under Pulumi mocks."""

from __future__ import annotations

import dataclasses
from typing import Any

import pulumi
import pytest

from voxplane.desired.common import GPU_PRODUCT_LABEL, GPU_RESOURCE, LABEL_GPU_GROUP
from voxplane.desired.gpu import (
    aws_gpu_name,
    build_gpu_group,
    gpu_affinity,
    gpu_tolerations,
    node_pool_name,
    node_requirements,
)
from voxplane.components.gpu import GPUNodeGroup, GPUNodeGroupArgs
from voxplane.manifest.model import GpuNodeGroup, Region, Taint

from ._helpers import desired, project

GROUPS = [(r, g) for r in sorted(project().regions) for g in sorted(project().regions[r].gpu_node_groups)]
KARPENTER = [(r, g) for r, g in GROUPS if project().regions[r].gpu_node_groups[g].provisioner == "karpenter"]
PREPROVISIONED = [(r, g) for r, g in GROUPS if (r, g) not in KARPENTER]


def _group(region_name: str, group_name: str) -> tuple[Region, GpuNodeGroup]:
    region = project().regions[region_name]
    return region, region.gpu_node_groups[group_name]


def _node_pool(region_name: str, group_name: str) -> dict[str, Any]:
    objects = build_gpu_group(*_group(region_name, group_name))
    assert len(objects) == 1
    return objects[0]


def _requirement(pool: dict[str, Any], key: str) -> dict[str, Any]:
    found = [r for r in pool["spec"]["template"]["spec"]["requirements"] if r["key"] == key]
    assert len(found) == 1, f"{key}: {found}"
    return found[0]


def tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    """Kubernetes toleration matching (core/v1 Toleration.ToleratesTaint)."""
    for t in tolerations:
        if t.get("effect") not in (None, "", taint["effect"]):
            continue
        if t.get("key") not in (None, "", taint["key"]):
            continue
        if t.get("operator", "Equal") == "Exists" or t.get("value") == taint.get("value"):
            return True
    return False


def test_examples_cover_both_provisioners():
    """The example regions exercise karpenter groups (us-east) and preprovisioned ones (local, eu-west)."""
    assert ("us-east", "h100") in KARPENTER and ("us-east", "l4") in KARPENTER
    assert ("eu-west", "l40s") in PREPROVISIONED and ("local", "l4") in PREPROVISIONED


@pytest.mark.parametrize("region_name,group_name", KARPENTER)
def test_karpenter_group_is_one_cluster_scoped_v1_node_pool(region_name, group_name):
    """A karpenter group is a karpenter.sh/v1 NodePool named <prefix>-<group>, with no namespace."""
    region, group = _group(region_name, group_name)
    pool = _node_pool(region_name, group_name)
    assert pool["apiVersion"] == "karpenter.sh/v1"
    assert pool["kind"] == "NodePool"
    assert pool["metadata"]["name"] == f"vox-{group_name}" == node_pool_name(region, group)
    assert "namespace" not in pool["metadata"]
    assert pool["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "voxplane"
    assert pool["metadata"]["labels"]["app.kubernetes.io/part-of"] == region_name
    assert pool["metadata"]["annotations"]["voxplane.io/source"] == f"regions/{region_name}.yaml"


@pytest.mark.parametrize("region_name,group_name", KARPENTER)
def test_node_pool_labels_nodes_with_group_and_gpu_product(region_name, group_name):
    """Template labels carry voxplane.io/gpu-group and nvidia.com/gpu.product, so Karpenter can plan for the pods' affinity."""
    _, group = _group(region_name, group_name)
    labels = _node_pool(region_name, group_name)["spec"]["template"]["metadata"]["labels"]
    assert labels == {LABEL_GPU_GROUP: group_name, GPU_PRODUCT_LABEL: group.gpu_product}


@pytest.mark.parametrize("region_name,group_name", KARPENTER)
def test_node_pool_requirements_match_the_group(region_name, group_name):
    """Capacity types as declared; AWS GPU manufacturer, name and count match product and gpus_per_node."""
    _, group = _group(region_name, group_name)
    pool = _node_pool(region_name, group_name)
    assert _requirement(pool, "karpenter.sh/capacity-type") == {
        "key": "karpenter.sh/capacity-type", "operator": "In", "values": list(group.karpenter.capacity_types)
    }
    assert group.karpenter.node_class_group == "karpenter.k8s.aws"
    assert _requirement(pool, "karpenter.k8s.aws/instance-gpu-count")["values"] == [str(group.gpus_per_node)]
    assert _requirement(pool, "karpenter.k8s.aws/instance-gpu-manufacturer")["values"] == ["nvidia"]
    assert _requirement(pool, "karpenter.k8s.aws/instance-gpu-name")["values"] == [group_name]  # h100, l4
    for req in pool["spec"]["template"]["spec"]["requirements"]:
        assert req["operator"] == "In" and req["values"], req


def test_us_east_capacity_and_counts_are_concrete():
    """us-east h100: on-demand+reserved, 8 GPUs a node, at most 24 GPUs over 3 nodes, consolidate after 30m."""
    pool = _node_pool("us-east", "h100")
    assert _requirement(pool, "karpenter.sh/capacity-type")["values"] == ["on-demand", "reserved"]
    assert _requirement(pool, "karpenter.k8s.aws/instance-gpu-count")["values"] == ["8"]
    assert pool["spec"]["limits"] == {"nvidia.com/gpu": "24", "nodes": "3"}
    assert pool["spec"]["disruption"]["consolidateAfter"] == "30m"
    assert pool["spec"]["template"]["spec"]["nodeClassRef"] == {
        "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "gpu-h100"
    }


@pytest.mark.parametrize("region_name,group_name", KARPENTER)
def test_node_pool_taints_class_lifetime_and_limits(region_name, group_name):
    """Taints are the group's; nodeClassRef names group/kind/name; expiry with a bounded drain; GPU and node limits."""
    _, group = _group(region_name, group_name)
    spec = _node_pool(region_name, group_name)["spec"]
    template = spec["template"]["spec"]
    expected_taints = [
        {"key": t.key, **({"value": t.value} if t.value is not None else {}), "effect": t.effect} for t in group.taints
    ]
    assert template["taints"] == expected_taints and expected_taints
    assert template["nodeClassRef"] == {
        "group": group.karpenter.node_class_group,
        "kind": group.karpenter.node_class_kind,
        "name": group.karpenter.node_class,
    }
    assert template["expireAfter"] == "720h"
    assert template["terminationGracePeriod"] == "2h"
    assert spec["limits"] == {
        GPU_RESOURCE: str(group.max_nodes * group.gpus_per_node),
        "nodes": str(group.max_nodes),
    }


@pytest.mark.parametrize("region_name,group_name", KARPENTER)
def test_node_pool_only_consolidates_empty_nodes_one_at_a_time(region_name, group_name):
    """Disruption: WhenEmpty after the group's consolidate_after, budget of one node."""
    _, group = _group(region_name, group_name)
    disruption = _node_pool(region_name, group_name)["spec"]["disruption"]
    assert disruption == {
        "consolidationPolicy": "WhenEmpty",
        "consolidateAfter": group.karpenter.consolidate_after,
        "budgets": [{"nodes": "1"}],
    }


@pytest.mark.parametrize("region_name,group_name", PREPROVISIONED)
def test_preprovisioned_group_creates_nothing_and_documents_nodes(region_name, group_name):
    """Preprovisioned: no NodePool; node_requirements lists the labels, taints and GPUs nodes must carry."""
    region, group = _group(region_name, group_name)
    assert build_gpu_group(region, group) == []
    req = node_requirements(region, group)
    assert req["node_pool"] == ""
    assert req["provisioner"] == "preprovisioned"
    assert req["labels"] == {LABEL_GPU_GROUP: group_name, GPU_PRODUCT_LABEL: group.gpu_product}
    assert req["taints"] == [
        {"key": t.key, **({"value": t.value} if t.value is not None else {}), "effect": t.effect} for t in group.taints
    ]
    assert req["allocatable"] == {GPU_RESOURCE: str(group.gpus_per_node)}
    assert req["nodes"] == {"min": group.min_nodes, "max": group.max_nodes}


def test_eu_west_node_requirements_are_concrete():
    """eu-west l40s: label and taint commands an operator can run, 2 GPUs a node."""
    region, group = _group("eu-west", "l40s")
    req = node_requirements(region, group)
    assert req["commands"] == [
        "kubectl label node <node> voxplane.io/gpu-group=l40s",
        "kubectl taint node <node> nvidia.com/gpu=present:NoSchedule",
    ]
    assert req["allocatable"] == {"nvidia.com/gpu": "2"}


@pytest.mark.parametrize("region_name,group_name", GROUPS)
def test_affinity_requires_product_and_group(region_name, group_name):
    """Node affinity (required) selects nvidia.com/gpu.product In [product] AND voxplane.io/gpu-group In [group]."""
    _, group = _group(region_name, group_name)
    terms = gpu_affinity(group)["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [
        {
            "matchExpressions": [
                {"key": "nvidia.com/gpu.product", "operator": "In", "values": [group.gpu_product]},
                {"key": "voxplane.io/gpu-group", "operator": "In", "values": [group_name]},
            ]
        }
    ]


@pytest.mark.parametrize("region_name,group_name", GROUPS)
def test_tolerations_cover_every_taint_and_always_the_gpu_taint(region_name, group_name):
    """Pods tolerate nvidia.com/gpu (Exists, NoSchedule) always — AKS adds nothing — and each taint of the group."""
    _, group = _group(region_name, group_name)
    tolerations = gpu_tolerations(group)
    assert tolerations[0] == {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    for taint in group.taints:
        assert tolerates(tolerations, {"key": taint.key, "value": taint.value, "effect": taint.effect})
    # Any value of the GPU taint (true, present, …) is tolerated.
    assert tolerates(tolerations, {"key": "nvidia.com/gpu", "value": "anything", "effect": "NoSchedule"})
    # Nothing broader than that: an unrelated taint is not tolerated.
    assert not tolerates(tolerations, {"key": "voxplane.io/media", "value": "true", "effect": "NoSchedule"})


def test_custom_taints_get_matching_tolerations():
    """A group taint other than the GPU one yields an Equal toleration (with value) or Exists (without)."""
    _, group = _group("us-east", "l4")
    group = dataclasses.replace(
        group,
        taints=(
            Taint(key="nvidia.com/gpu", value="true", effect="NoSchedule"),
            Taint(key="voxplane.io/inference", value="tts", effect="NoExecute"),
            Taint(key="dedicated", effect="NoSchedule"),
        ),
    )
    assert gpu_tolerations(group) == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "voxplane.io/inference", "operator": "Equal", "value": "tts", "effect": "NoExecute"},
        {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"},
    ]


@pytest.mark.parametrize(
    "product,name",
    [
        ("NVIDIA-H100-80GB-HBM3", "h100"),
        ("NVIDIA-L4", "l4"),
        ("NVIDIA-L40S", "l40s"),
        ("NVIDIA-A100-SXM4-40GB", "a100"),
        ("NVIDIA-A10G", "a10g"),
        ("Tesla-T4", "t4"),
    ],
)
def test_aws_gpu_name_from_gfd_product(product, name):
    """GFD product names map to AWS's karpenter.k8s.aws/instance-gpu-name values."""
    assert aws_gpu_name(product) == name


def test_azure_node_class_uses_azure_gpu_labels():
    """An Azure node class gets sku-gpu-count/manufacturer and no AWS keys."""
    region, group = _group("us-east", "h100")
    group = dataclasses.replace(
        group,
        karpenter=dataclasses.replace(group.karpenter, node_class_group="karpenter.azure.com", node_class_kind="AKSNodeClass"),
    )
    pool = build_gpu_group(region, group)[0]
    keys = [r["key"] for r in pool["spec"]["template"]["spec"]["requirements"]]
    assert _requirement(pool, "karpenter.azure.com/sku-gpu-count")["values"] == ["8"]
    assert not [k for k in keys if k.startswith("karpenter.k8s.aws/")]


def test_unknown_node_class_falls_back_to_limits_and_labels():
    """A provider without known GPU labels gets no provider keys; GPU limit and template labels still bound it."""
    region, group = _group("us-east", "l4")
    group = dataclasses.replace(group, karpenter=dataclasses.replace(group.karpenter, node_class_group="example.com"))
    pool = build_gpu_group(region, group)[0]
    keys = [r["key"] for r in pool["spec"]["template"]["spec"]["requirements"]]
    assert keys == ["karpenter.sh/capacity-type", "kubernetes.io/os"]
    assert pool["spec"]["limits"][GPU_RESOURCE] == "12"
    assert pool["spec"]["template"]["metadata"]["labels"][GPU_PRODUCT_LABEL] == "NVIDIA-L4"


# --- the component under Pulumi mocks -------------------------------------------------------------


@pulumi.runtime.test
def test_component_registers_node_pool_for_karpenter_group(mocked):
    """GPUNodeGroup for us-east h100 registers one karpenter.sh/v1 NodePool and outputs its name."""
    region, group = _group("us-east", "h100")
    component = GPUNodeGroup("us-east-gpu-h100", GPUNodeGroupArgs(region=region, group=group, objects=desired("us-east").gpu_groups["h100"]))

    def check(values):
        name, requirements = values[0], values[1]
        pools = [r for r in mocked.resources if r.typ == "kubernetes:karpenter.sh/v1:NodePool"]
        assert len(pools) == 1
        assert pools[0].name == "us-east-gpu-h100-nodepool-vox-h100"
        assert pools[0].inputs["spec"]["limits"] == {"nvidia.com/gpu": "24", "nodes": "3"}
        assert name == "vox-h100"
        assert requirements["labels"] == {LABEL_GPU_GROUP: "h100", GPU_PRODUCT_LABEL: "NVIDIA-H100-80GB-HBM3"}
        comp = [r for r in mocked.resources if r.typ == "voxplane:inference:GPUNodeGroup"]
        assert len(comp) == 1 and comp[0].custom is False

    urns = [component.urn, *(c.urn for c in component.children.values())]
    return pulumi.Output.all(component.node_pool_name, component.node_requirements, *urns).apply(check)


@pulumi.runtime.test
def test_component_registers_nothing_for_preprovisioned_group(mocked):
    """GPUNodeGroup for eu-west l40s registers no Kubernetes object; node_pool_name is ""."""
    region, group = _group("eu-west", "l40s")
    component = GPUNodeGroup("eu-west-gpu-l40s", GPUNodeGroupArgs(region=region, group=group, objects=desired("eu-west").gpu_groups["l40s"]))

    def check(values):
        name, requirements = values[0], values[1]
        assert [r.typ for r in mocked.resources] == ["voxplane:inference:GPUNodeGroup"]
        assert name == ""
        assert requirements["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]

    return pulumi.Output.all(component.node_pool_name, component.node_requirements, component.urn).apply(check)
