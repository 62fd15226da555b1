"""LiveKitSFU: a region's livekit-server fleet and its dedicated Redis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi

from voxplane.desired.common import LIVEKIT_SERVICE, K8sObject, livekit_internal_url
from voxplane.desired.sfu import firewall_rules
from voxplane.manifest.model import Region

from ._register import register_all
from .secrets import SecretResolver


@dataclass(frozen=True, kw_only=True)
class LiveKitSFUArgs:
    """Inputs of a `LiveKitSFU`.

    Attributes:
        region: The region whose `livekit` section is deployed (its system namespace must exist;
            the region stack creates it and passes it through `opts.depends_on`).
        objects: Its objects, as `build_region` gives them (`RegionObjects.sfu`).
        secrets: Resolves the server's key file (and a Redis password held in stack config).
    """

    region: Region
    objects: Sequence[K8sObject]
    secrets: SecretResolver


class LiveKitSFU(pulumi.ComponentResource):
    """livekit-server ConfigMap, keys Secret, Deployment (host network, one pod per media node),
    Service and PDB, plus the in-cluster Redis when `livekit.redis.mode` is `in-cluster`."""

    service_name: pulumi.Output[str]
    internal_url: pulumi.Output[str]
    public_url: pulumi.Output[str]
    firewall_rules: pulumi.Output[list]
    #: the Secrets it declares (the key file, Redis's password): what reads them waits for them
    secret_resources: list[pulumi.Resource]

    def __init__(self, name: str, args: LiveKitSFUArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("voxplane:livekit:LiveKitSFU", name, None, opts)
        region = args.region
        self.children = register_all(name, args.objects, args.secrets, pulumi.ResourceOptions(parent=self))
        self.secret_resources = [r for (kind, _, _), r in self.children.items() if kind == "Secret"]
        self.service_name = pulumi.Output.from_input(LIVEKIT_SERVICE)
        self.internal_url = pulumi.Output.from_input(livekit_internal_url(region))
        self.public_url = pulumi.Output.from_input(region.livekit.public_url)
        self.firewall_rules = pulumi.Output.from_input(firewall_rules(region))
        self.register_outputs(
            {
                "service_name": self.service_name,
                "internal_url": self.internal_url,
                "public_url": self.public_url,
                "firewall_rules": self.firewall_rules,
            }
        )
