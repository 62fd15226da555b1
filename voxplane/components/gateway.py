"""LiveKitGateway: the authorizing gateway tenants reach LiveKit through (voxplane/gateway), and
its image, built from the gateway package (`GATEWAY_CONTEXT`) as an agent is from its folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi

import voxplane.gateway
from voxplane.desired.common import K8sObject, gateway_internal_url
from voxplane.desired.gateway import GATEWAY_REPOSITORY
from voxplane.manifest.model import Region

from ._register import register_all
from .images import FolderImage, platform_image
from .secrets import SecretResolver

#: The image's build context: the gateway package of the voxplane running the program, so the
#: gateway that reads the config is the code that rendered it. It imports nothing else of voxplane
#: (tests/gateway/test_image_context.py); its Dockerfile and locked requirements are in it.
GATEWAY_CONTEXT = os.path.dirname(os.path.abspath(voxplane.gateway.__file__))


@dataclass(frozen=True, kw_only=True)
class LiveKitGatewayArgs:
    """Inputs of a `LiveKitGateway`.

    Attributes:
        region: The region (its system namespace must exist; the region stack passes it through
            `opts.depends_on`).
        objects: Its objects, as `build_region` gives them (`RegionObjects.gateway`), the Deployment
            running `IMAGE_PLACEHOLDER` (the built image goes there).
        secrets: Derives the gateway key's secret and every tenant key's secret from the root secret.
        image_registry: Registry (and path) the gateway image is pushed to (stack config
            `voxplane:imageRegistry`).
        build_images: Build and push the image (needs a Docker engine); False deploys its
            content-hash tag, to be built and pushed from the same folder by whoever applies.
    """

    region: Region
    objects: Sequence[K8sObject]
    secrets: SecretResolver
    image_registry: Optional[str]
    build_images: bool = True


class LiveKitGateway(pulumi.ComponentResource):
    """Gateway image, ConfigMap (tenant scopes), keys Secret, Deployment, Service, PDB,
    NetworkPolicy and PodMonitor. Outputs `url` (the in-cluster URL agents get as LIVEKIT_URL)
    and `image` (what the pods run: the pushed digest when the stack builds images)."""

    url: pulumi.Output[str]
    image: pulumi.Output[str]

    def __init__(self, name: str, args: LiveKitGatewayArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("voxplane:livekit:LiveKitGateway", name, None, opts)
        built = gateway_image(name, args, self)
        deployment = next(o["metadata"]["name"] for o in args.objects if o["kind"] == "Deployment")
        self.children = register_all(name, args.objects, args.secrets, pulumi.ResourceOptions(parent=self),
                                     images={("Deployment", deployment): built.ref})
        self.url = pulumi.Output.from_input(gateway_internal_url(args.region))
        self.image = pulumi.Output.from_input(built.ref)
        self.register_outputs({"url": self.url, "image": self.image})


def gateway_image(name: str, args: LiveKitGatewayArgs, parent: pulumi.Resource) -> FolderImage:
    """The gateway's image, tagged with the package's content hash: a change to the gateway's code
    (or its Dockerfile, its locked requirements) rolls the gateway in every region, and nothing
    else does."""
    return platform_image(name, context=GATEWAY_CONTEXT, repository=GATEWAY_REPOSITORY,
                          image_registry=args.image_registry, build=args.build_images,
                          needed_by=f"region {args.region.name!r} runs the LiveKit gateway", parent=parent)
