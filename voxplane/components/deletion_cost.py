"""PodDeletionCost: the controller that keeps each agent pod's `controller.kubernetes.io/pod-deletion-cost`
equal to its worker's active jobs (voxplane/controllers/deletion_cost), and its image, built from
the controller package (`CONTROLLER_CONTEXT`) as the gateway's is from its own."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi

import voxplane.controllers.deletion_cost
from voxplane.desired.common import K8sObject
from voxplane.desired.deletion_cost import REPOSITORY
from voxplane.manifest.model import Region

from ._register import register_all
from .images import FolderImage, platform_image
from .secrets import SecretResolver

#: The image's build context: the controller package of the voxplane running the program. It
#: imports nothing else of voxplane (tests/controllers/test_image_context.py); its Dockerfile and
#: locked requirements are in it.
CONTROLLER_CONTEXT = os.path.dirname(os.path.abspath(voxplane.controllers.deletion_cost.__file__))


#: Kinds that bound what the controller may do.
_GUARD = ("Role", "RoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


@dataclass(frozen=True, kw_only=True)
class PodDeletionCostArgs:
    """Inputs of a `PodDeletionCost`.

    Attributes:
        region: The region (its system namespace and the tenant namespaces must exist; the region
            stack passes them through `opts.depends_on`).
        objects: Its objects, as `build_region` gives them (`RegionObjects.deletion_cost`; none
            when the region runs no agent pool), the Deployment running `IMAGE_PLACEHOLDER` (the
            built image goes there).
        secrets: Resolves secret markers (the controller's objects hold none).
        image_registry: Registry (and path) the image is pushed to (stack config `voxplane:imageRegistry`).
        build_images: Build and push the image (needs a Docker engine); False deploys its
            content-hash tag, to be built and pushed from the same folder by whoever applies.
    """

    region: Region
    objects: Sequence[K8sObject]
    secrets: SecretResolver
    image_registry: Optional[str]
    build_images: bool = True


class PodDeletionCost(pulumi.ComponentResource):
    """Image, ConfigMap, ServiceAccount, a Role and RoleBinding per tenant namespace with agent
    pools, a ValidatingAdmissionPolicy and its binding, Deployment, PDB, NetworkPolicy and
    PodMonitor; nothing when the region has no agent pool. Output `image` (what the pod runs: the
    pushed digest when the stack builds images; "" when there is no controller)."""

    image: pulumi.Output[str]

    def __init__(self, name: str, args: PodDeletionCostArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("voxplane:controllers:PodDeletionCost", name, None, opts)
        self.children: dict[tuple[str, str, str], pulumi.CustomResource] = {}
        self.image = pulumi.Output.from_input("")
        if args.objects:
            built = controller_image(name, args, self)
            child = pulumi.ResourceOptions(parent=self)
            # What the controller may do, in place before it runs: the admission policy, and one Role
            # and RoleBinding of the same name per tenant namespace (the namespace names them apart).
            guard = [o for o in args.objects if o["kind"] in _GUARD and o["metadata"].get("namespace") is None]
            self.children = register_all(name, guard, args.secrets, child)
            for ns in sorted({o["metadata"]["namespace"] for o in args.objects if o["kind"] in ("Role", "RoleBinding")}):
                rbac = [o for o in args.objects if o["kind"] in ("Role", "RoleBinding") and o["metadata"]["namespace"] == ns]
                self.children.update(register_all(f"{name}-{ns}", rbac, args.secrets, child))
            rest = [o for o in args.objects if o["kind"] not in _GUARD]
            deployment = next(o["metadata"]["name"] for o in rest if o["kind"] == "Deployment")
            after = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=list(self.children.values())))
            self.children.update(register_all(name, rest, args.secrets, after, images={("Deployment", deployment): built.ref}))
            self.image = pulumi.Output.from_input(built.ref)
        self.register_outputs({"image": self.image})


def controller_image(name: str, args: PodDeletionCostArgs, parent: pulumi.Resource) -> FolderImage:
    """The controller's image, tagged with the package's content hash."""
    return platform_image(name, context=CONTROLLER_CONTEXT, repository=REPOSITORY, image_registry=args.image_registry,
                          build=args.build_images,
                          needed_by=f"region {args.region.name!r} runs the deletion-cost controller", parent=parent)
