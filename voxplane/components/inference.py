"""InferencePool: one model of a region (vLLM, TTS or STT server) on its GPU node group, with the
Service agents reach it through, the KEDA autoscaler that owns its replica count, and the GPU
preflight each pod runs first (its image: `preflight_image`, which the region stack builds once from
voxplane/gpu_preflight, as it builds the gateway's)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi

import voxplane.gpu_preflight
from voxplane.desired.common import K8sObject, model_base_url
from voxplane.desired.inference import PREFLIGHT_REPOSITORY, WORKLOAD_KIND
from voxplane.manifest.model import Model, Region

from ._register import register_all
from .images import FolderImage, platform_image
from .secrets import SecretResolver

#: The preflight image's build context: the preflight package of the voxplane running the program.
#: It imports nothing else of voxplane (tests/test_gpu_preflight_image.py); its Dockerfile and
#: locked requirements are in it.
PREFLIGHT_CONTEXT = os.path.dirname(os.path.abspath(voxplane.gpu_preflight.__file__))


@dataclass(frozen=True, kw_only=True)
class InferencePoolArgs:
    """Inputs of an `InferencePool`.

    Attributes:
        region: The region the model runs in; its GPU node group must be declared there.
        model: The model as declared under `models` in the region manifest.
        objects: Its objects, as `build_region` gives them (`RegionObjects.models[name]`).
        secrets: Resolves `hf_token` when it is a stack config secret (`{config: <key>}`).
        preflight_image: The GPU preflight's image (`preflight_image()`, built once by the region
            stack: the pushed digest when the stack builds images, else the content-hash tag).
    """

    region: Region
    model: Model
    objects: Sequence[K8sObject]
    secrets: SecretResolver
    preflight_image: pulumi.Input[str]


class InferencePool(pulumi.ComponentResource):
    """StatefulSet (one cache volume per replica), Service, PDB, PodMonitor, KEDA ScaledObject and
    NetworkPolicy of one model, plus the `<model>-hf-token` Secret when the token comes from stack
    config."""

    service_url: pulumi.Output[str]
    model_id: pulumi.Output[str]

    def __init__(self, name: str, args: InferencePoolArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("voxplane:inference:InferencePool", name, None, opts)
        region, model = args.region, args.model
        objects = args.objects
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
                images={(WORKLOAD_KIND, model.name): args.preflight_image},
            )
        )
        self.service_url = pulumi.Output.from_input(model_base_url(region, model.name))
        self.model_id = pulumi.Output.from_input(model.model_id)
        self.register_outputs({"service_url": self.service_url, "model_id": self.model_id})


def preflight_image(name: str, region: Region, *, image_registry: Optional[str], build: bool,
                    parent: pulumi.Resource) -> FolderImage:
    """The GPU preflight's image in the stack's registry, tagged with the package's content hash
    (built once per region stack, run by every model pod)."""
    return platform_image(name, context=PREFLIGHT_CONTEXT, repository=PREFLIGHT_REPOSITORY,
                          image_registry=image_registry, build=build,
                          needed_by=f"region {region.name!r} runs models, whose pods start with the GPU preflight",
                          parent=parent)
