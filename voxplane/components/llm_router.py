"""LLMRouter: the router in front of an LLM's replicas (voxplane/desired/llm_router.py), which
keeps each call on one replica, and its image, built from voxplane/llm_router as the gateway's is
from its package."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi

import voxplane.llm_router
from voxplane.desired.common import K8sObject
from voxplane.desired.llm_router import REPOSITORY, router_name
from voxplane.manifest.model import Model, Region

from ._register import register_all
from .images import FolderImage, platform_image
from .secrets import SecretResolver


@dataclass(frozen=True, kw_only=True)
class LLMRouterArgs:
    """Inputs of an `LLMRouter`.

    Attributes:
        region: The region the model runs in.
        model: The LLM the router stands in front of.
        objects: Its objects, as `build_region` gives them (`RegionObjects.routers[model name]`), the
            Deployment running `IMAGE_PLACEHOLDER` (the built image goes there).
        secrets: The region's resolver (the router's objects hold no secret; registration takes one).
        image_registry: Registry (and path) the router image is pushed to (stack config
            `voxplane:imageRegistry`).
        build_images: Build and push the router image (needs a Docker engine); False deploys
            its content-hash tag, to be built and pushed from the same folder by whoever applies.
    """

    region: Region
    model: Model
    objects: Sequence[K8sObject]
    secrets: SecretResolver
    image_registry: Optional[str]
    build_images: bool = True


class LLMRouter(pulumi.ComponentResource):
    """The router's image, ServiceAccount, Role, RoleBinding, Deployment, Service, PDB, PodMonitor
    and NetworkPolicy. Outputs `image` (what the pods run: the pushed digest when the stack builds
    images)."""

    image: pulumi.Output[str]

    def __init__(self, name: str, args: LLMRouterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("voxplane:inference:LLMRouter", name, None, opts)
        built = router_image(name, args, self)
        self.children = register_all(name, args.objects, args.secrets, pulumi.ResourceOptions(parent=self),
                                     images={("Deployment", router_name(args.model)): built.ref})
        self.image = pulumi.Output.from_input(built.ref)
        self.register_outputs({"image": self.image})


def router_image(name: str, args: LLMRouterArgs, parent: pulumi.Resource) -> FolderImage:
    """The router's image, tagged with voxplane/llm_router's content hash: a new router version
    (its locked requirements) rolls the routers, and nothing else does."""
    return platform_image(name, context=voxplane.llm_router.FOLDER, repository=REPOSITORY,
                          image_registry=args.image_registry, build=args.build_images,
                          needed_by=f"model {args.model.name!r} of region {args.region.name!r} has a router",
                          parent=parent)
