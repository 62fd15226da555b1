"""AgentRecovery: the controller that dispatches a call's agent again when its worker dies
(voxplane/controllers/recovery), and its image, built from the controller package
(`RECOVERY_CONTEXT`) as the gateway's is from its own."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi

import voxplane.controllers.recovery
from voxplane.desired.common import K8sObject
from voxplane.desired.recovery import REPOSITORY
from voxplane.manifest.model import Region

from ._register import register_all
from .images import FolderImage, platform_image
from .secrets import SecretResolver

#: The image's build context: the controller package of the voxplane running the program. It
#: imports nothing else of voxplane (tests/recovery/test_image_context.py); its Dockerfile and
#: locked requirements are in it.
RECOVERY_CONTEXT = os.path.dirname(os.path.abspath(voxplane.controllers.recovery.__file__))


@dataclass(frozen=True, kw_only=True)
class AgentRecoveryArgs:
    """Inputs of an `AgentRecovery`.

    Attributes:
        region: The region (its system namespace must exist; the region stack passes it through
            `opts.depends_on`).
        objects: Its objects, as `build_region` gives them (`RegionObjects.recovery`), the
            Deployment running `IMAGE_PLACEHOLDER` (the built image goes there).
        secrets: Derives its LiveKit key's secret from the root secret.
        image_registry: Registry (and path) the image is pushed to (stack config `voxplane:imageRegistry`).
        build_images: Build and push the image (needs a Docker engine); False deploys its
            content-hash tag, to be built and pushed from the same folder by whoever applies.
    """

    region: Region
    objects: Sequence[K8sObject]
    secrets: SecretResolver
    image_registry: Optional[str]
    build_images: bool = True


class AgentRecovery(pulumi.ComponentResource):
    """Image, ConfigMap, key Secret, Deployment, Service, PDB, NetworkPolicy and PodMonitor.
    Output `image` (what the pod runs: the pushed digest when the stack builds images)."""

    image: pulumi.Output[str]

    def __init__(self, name: str, args: AgentRecoveryArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("voxplane:controllers:AgentRecovery", name, None, opts)
        built = recovery_image(name, args, self)
        deployment = next(o["metadata"]["name"] for o in args.objects if o["kind"] == "Deployment")
        self.children = register_all(name, args.objects, args.secrets, pulumi.ResourceOptions(parent=self),
                                     images={("Deployment", deployment): built.ref})
        self.image = pulumi.Output.from_input(built.ref)
        self.register_outputs({"image": self.image})


def recovery_image(name: str, args: AgentRecoveryArgs, parent: pulumi.Resource) -> FolderImage:
    """The controller's image, tagged with the package's content hash."""
    return platform_image(name, context=RECOVERY_CONTEXT, repository=REPOSITORY, image_registry=args.image_registry,
                          build=args.build_images,
                          needed_by=f"region {args.region.name!r} runs the agent recovery controller", parent=parent)
