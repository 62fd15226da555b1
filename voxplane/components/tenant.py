"""Tenant: one tenant's namespace, isolation policies, quota and LiveKit API key in a region."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi

from voxplane.desired.common import tenant_namespace
from voxplane.desired.tenant import build_tenant
from voxplane.manifest.model import Agent, Region
from voxplane.manifest.model import Tenant as TenantModel

from ._register import register_all
from .secrets import SecretResolver


@dataclass(frozen=True)
class TenantArgs:
    """Inputs of a `Tenant`.

    Attributes:
        region: The region the tenant is deployed in.
        tenant: The tenant as declared in the region manifest.
        agents: The tenant's agents deployed in this region (their providers open egress).
        secrets: Resolves the tenant's derived LiveKit API secret.
    """

    region: Region
    tenant: TenantModel
    agents: Sequence[Agent]
    secrets: SecretResolver


class Tenant(pulumi.ComponentResource):
    """Namespace, default-deny NetworkPolicy with explicit egress, ResourceQuota, LimitRange and
    the `livekit-api` Secret of one tenant."""

    namespace: pulumi.Output[str]

    def __init__(self, name: str, args: TenantArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("voxplane:tenant:Tenant", name, None, opts)
        objects = build_tenant(args.region, args.tenant, args.agents)
        self.children = register_all(name, objects, args.secrets, pulumi.ResourceOptions(parent=self))
        self.namespace = pulumi.Output.from_input(tenant_namespace(args.region, args.tenant.name))
        self.register_outputs({"namespace": self.namespace})
