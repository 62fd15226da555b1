"""GPUNodeGroup: one GPU node group of a region — a Karpenter NodePool, or for preprovisioned
groups nothing to create, only the labels and taints their nodes must carry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import pulumi

from voxplane.desired.common import K8sObject
from voxplane.desired.gpu import node_pool_name, node_requirements
from voxplane.manifest.model import GpuNodeGroup, Region

from ._register import register_all
from .secrets import SecretResolver


@dataclass(frozen=True, kw_only=True)
class GPUNodeGroupArgs:
    """Inputs of a `GPUNodeGroup`.

    Attributes:
        region: The region the group belongs to (its namespace prefix names the NodePool).
        group: The group as declared under `gpu_node_groups` in the region manifest.
        objects: Its objects (none for a preprovisioned group), as `build_region` gives them (`RegionObjects.gpu_groups[name]`).
        secrets: Resolver for secret markers; a NodePool has none, so the default (an empty
            resolver for the region) is enough.
    """

    region: Region
    group: GpuNodeGroup
    objects: Sequence[K8sObject]
    secrets: Optional[SecretResolver] = None


class GPUNodeGroup(pulumi.ComponentResource):
    """A Karpenter v1 NodePool (`<prefix>-<group>`) for `provisioner: karpenter`; for
    `preprovisioned` only outputs describing what the existing nodes must carry."""

    node_pool_name: pulumi.Output[str]
    node_requirements: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, args: GPUNodeGroupArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("voxplane:inference:GPUNodeGroup", name, None, opts)
        region, group = args.region, args.group
        secrets = args.secrets or SecretResolver(region.name, ())
        self.children = register_all(name, args.objects, secrets, pulumi.ResourceOptions(parent=self))
        pool = node_pool_name(region, group) if args.objects else ""
        self.node_pool_name = pulumi.Output.from_input(pool)
        self.node_requirements = pulumi.Output.from_input(node_requirements(region, group))
        self.register_outputs({"node_pool_name": self.node_pool_name, "node_requirements": self.node_requirements})
