"""Tenant: one tenant's namespace, isolation policies, quota and LiveKit API key in a region."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi

from voxplane.desired.common import K8sObject, tenant_namespace
from voxplane.manifest.model import Region
from voxplane.manifest.model import Tenant as TenantModel

from ._register import register_all
from .secrets import SecretResolver


@dataclass(frozen=True, kw_only=True)
class TenantArgs:
    """Inputs of a `Tenant`.

    Attributes:
        region: The region the tenant is deployed in.
        tenant: The tenant as declared in the region manifest.
        objects: Its objects, as `build_region` gives them (`RegionObjects.tenants[name]`).
        secrets: Resolves the tenant's derived LiveKit API secret.
    """

    region: Region
    tenant: TenantModel
    objects: Sequence[K8sObject]
    secrets: SecretResolver


class Tenant(pulumi.ComponentResource):
    """Namespace, default-deny NetworkPolicy with explicit egress, ResourceQuota, LimitRange and
    the `livekit-api` Secret of one tenant."""

    namespace: pulumi.Output[str]

    def __init__(self, name: str, args: TenantArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("voxplane:tenant:Tenant", name, None, opts)
        self.children = register_all(name, args.objects, args.secrets, pulumi.ResourceOptions(parent=self))
        self.namespace = pulumi.Output.from_input(tenant_namespace(args.region, args.tenant.name))
        self.register_outputs({"namespace": self.namespace})
