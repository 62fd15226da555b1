"""InferencePool: one model of a region (vLLM, TTS or STT server) on its GPU node group, with the
Service agents reach it through, the KEDA autoscaler that owns its replica count and, for an LLM
with more than one replica, the router that keeps each call on one replica (its image built from
voxplane/llm_router as the gateway's is from its package)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi

import voxplane.llm_router
from voxplane.desired.common import model_base_url
from voxplane.desired.inference import WORKLOAD_KIND, build_model, model_clients, model_labels
from voxplane.desired.llm_router import REPOSITORY as ROUTER_REPOSITORY, build_router, has_router, router_name
from voxplane.model import Agent, Model, Region

from ._register import register_all
from .images import IMAGE_PLACEHOLDER, FolderImage, folder_image, require_registry
from .secrets import SecretResolver


@dataclass(frozen=True)
class InferencePoolArgs:
    """Inputs of an `InferencePool`.

    Attributes:
        region: The region the model runs in; its GPU node group must be declared there.
        model: The model as declared under `models` in the region manifest.
        secrets: Resolves `hf_token` when it is a stack config secret (`{config: <key>}`).
        agents: The region's agents; those calling the model are the only clients its
            NetworkPolicy admits.
        image_registry: Registry (and path) the router image is pushed to (stack config
            `voxplane:imageRegistry`); needed only by a model with a router.
        build_images: Build and push the router image (needs a Docker engine); False deploys
            its content-hash tag, to be built and pushed from the same folder by whoever applies.
    """

    region: Region
    model: Model
    secrets: SecretResolver
    agents: Sequence[Agent] = ()
    image_registry: Optional[str] = None
    build_images: bool = True


class InferencePool(pulumi.ComponentResource):
    """StatefulSet (one cache volume per replica), Service, PDB, PodMonitor, KEDA ScaledObject and
    NetworkPolicy of one model, plus the `<model>-hf-token` Secret when the token comes from stack
    config, and the `<model>-router` objects and image for an LLM with more than one replica."""

    service_url: pulumi.Output[str]
    model_id: pulumi.Output[str]

    def __init__(self, name: str, args: InferencePoolArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("voxplane:inference:InferencePool", name, None, opts)
        region, model = args.region, args.model
        objects = build_model(region, model, args.agents)
        child = pulumi.ResourceOptions(parent=self)
        # The token Secret exists before the pods that read it.
        self.children = register_all(name, [o for o in objects if o["kind"] == "Secret"], args.secrets, child)
        after = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=list(self.children.values())))
        self.children.update(
            register_all(
                name,
                [o for o in objects if o["kind"] != "Secret"],
                args.secrets,
                after,
                # KEDA's HPA owns replicas once the model exists; `pulumi up` must not reset them.
                ignore_changes={(WORKLOAD_KIND, model.name): ["spec.replicas"]},
            )
        )
        if has_router(model):
            built = router_image(name, args, self)
            objects = build_router(region, model, model_labels(region, model), model_clients(model, args.agents),
                                   image=IMAGE_PLACEHOLDER)
            self.children.update(register_all(f"{name}-router", objects, args.secrets, child,
                                              images={("Deployment", router_name(model)): built.ref}))
        self.service_url = pulumi.Output.from_input(model_base_url(region, model.name))
        self.model_id = pulumi.Output.from_input(model.model_id)
        self.register_outputs({"service_url": self.service_url, "model_id": self.model_id})


def router_image(name: str, args: InferencePoolArgs, parent: pulumi.Resource) -> FolderImage:
    """The router's image in the stack's registry, tagged with voxplane/llm_router's content hash:
    a new router version (its locked requirements) rolls the routers, and nothing else does."""
    if args.image_registry or args.build_images:
        registry = require_registry(args.image_registry, f"model {args.model.name!r} of region {args.region.name!r} "
                                                         "has a router, whose image the stack builds from voxplane/llm_router")
        repository = f"{registry}/{ROUTER_REPOSITORY}"
    else:
        repository = ROUTER_REPOSITORY
    return folder_image(f"{name}-router-image", context=voxplane.llm_router.FOLDER, repository=repository,
                        build=args.build_images, opts=pulumi.ResourceOptions(parent=parent))
