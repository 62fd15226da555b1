"""InferencePool: one model of a region (vLLM, TTS or STT server) on its GPU node group, with the
Service agents reach it through and the KEDA autoscaler that owns its replica count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi

from voxplane.desired.common import K8sObject, model_base_url
from voxplane.desired.inference import WORKLOAD_KIND
from voxplane.manifest.model import Model, Region

from ._register import register_all
from .secrets import SecretResolver


@dataclass(frozen=True, kw_only=True)
class InferencePoolArgs:
    """Inputs of an `InferencePool`.

    Attributes:
        region: The region the model runs in; its GPU node group must be declared there.
        model: The model as declared under `models` in the region manifest.
        objects: Its objects, as `build_region` gives them (`RegionObjects.models[name]`).
        secrets: Resolves `hf_token` when it is a stack config secret (`{config: <key>}`).
    """

    region: Region
    model: Model
    objects: Sequence[K8sObject]
    secrets: SecretResolver


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
            )
        )
        self.service_url = pulumi.Output.from_input(model_base_url(region, model.name))
        self.model_id = pulumi.Output.from_input(model.model_id)
        self.register_outputs({"service_url": self.service_url, "model_id": self.model_id})
