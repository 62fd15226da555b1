"""SIPBridge: a region's livekit-sip fleet, on the same Redis as its SFU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi

from voxplane.desired.common import K8sObject
from voxplane.desired.sip import sip_uri
from voxplane.manifest.model import Region

from ._register import register_all
from .secrets import SecretResolver


@dataclass(frozen=True, kw_only=True)
class SIPBridgeArgs:
    """Inputs of a `SIPBridge`.

    Attributes:
        region: The region whose `sip` section is deployed; without one nothing is registered.
        objects: Its objects, as `build_region` gives them (`RegionObjects.sip`).
        secrets: Resolves the admin API secret the bridge authenticates with.
    """

    region: Region
    objects: Sequence[K8sObject]
    secrets: SecretResolver


class SIPBridge(pulumi.ComponentResource):
    """livekit-sip ConfigMap, API Secret, Deployment (host network, one pod per node) and PDB."""

    sip_uri: pulumi.Output[str]

    def __init__(self, name: str, args: SIPBridgeArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("voxplane:livekit:SIPBridge", name, None, opts)
        region = args.region
        self.children = register_all(name, args.objects, args.secrets, pulumi.ResourceOptions(parent=self))
        self.sip_uri = pulumi.Output.from_input(sip_uri(region) if region.sip is not None else "")
        self.register_outputs({"sip_uri": self.sip_uri})
