"""LiveKitGateway: the authorizing gateway tenants reach LiveKit through (voxplane/gateway)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi

from voxplane.desired.common import gateway_internal_url
from voxplane.desired.gateway import build_gateway
from voxplane.model import Agent, Region

from ._register import register_all
from .secrets import SecretResolver


@dataclass(frozen=True)
class LiveKitGatewayArgs:
    """Inputs of a `LiveKitGateway`.

    Attributes:
        region: The region (its system namespace must exist; the region stack passes it through
            `opts.depends_on`).
        agents: Agents deployed in the region: their names and dispatch rooms make the tenant scopes.
        secrets: Derives the gateway key's secret and every tenant key's secret from the root secret.
    """

    region: Region
    agents: Sequence[Agent]
    secrets: SecretResolver


class LiveKitGateway(pulumi.ComponentResource):
    """Gateway ConfigMap (tenant scopes), keys Secret, Deployment, Service, PDB, NetworkPolicy and
    PodMonitor. Output `url`: the in-cluster URL agents get as LIVEKIT_URL."""

    url: pulumi.Output[str]

    def __init__(self, name: str, args: LiveKitGatewayArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("voxplane:livekit:LiveKitGateway", name, None, opts)
        objects = build_gateway(args.region, args.agents)
        self.children = register_all(name, objects, args.secrets, pulumi.ResourceOptions(parent=self))
        self.url = pulumi.Output.from_input(gateway_internal_url(args.region))
        self.register_outputs({"url": self.url})
