"""AgentPool: one agent manifest's autoscaled worker pool in a region, and its image when the
manifest builds from source (`code.build`).

An agent whose Dockerfile starts `FROM ${VOXPLANE_AGENT_BASE}` builds on the platform's agent base
image (`agents/_platform`, `voxplane.deploy.agent_base`): the base is built and pushed first, once per
region stack, and its digest is passed to the agent's build as that argument; the base folder's
hash is part of the agent's image tag, so a change of the shared glue rolls every such pool."""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pulumi

from voxplane.deploy import agent_base
from voxplane.desired.agent_pool import build_agent_pool
from voxplane.desired.common import tenant_namespace
from voxplane.manifest.model import Agent, Region

from ._register import register_all
from .images import IMAGE_PLACEHOLDER, FolderImage, build_context_hash, folder_image, require_registry
from .secrets import SecretResolver

@dataclass(frozen=True)
class AgentPoolArgs:
    """Inputs of an `AgentPool`.

    Attributes:
        region: The region the pool runs in.
        agent: The agent manifest (validated).
        secrets: Resolves the agent's config-held secrets into Pulumi secrets.
        image_registry: Registry (and path) images built from `code.build` are pushed to, e.g.
            `<registry-host>/voxplane` (stack config `voxplane:imageRegistry`). Needed only when the
            agent builds from source.
        repo_root: Repository root; `code.build` is relative to it. A relative root keeps the
            build paths recorded in state the same on every machine.
        build_images: Build and push `code.build` images (needs a Docker engine). False on stacks
            that only render YAML: the Deployment then names the content-hash tag, to be built
            and pushed by whoever applies the YAML.
    """

    region: Region
    agent: Agent
    secrets: SecretResolver
    image_registry: Optional[str]
    repo_root: str
    build_images: bool = True


class AgentPool(pulumi.ComponentResource):
    """Deployment of livekit-agents workers, `<agent>-secrets`, PDB, PodMonitor and KEDA
    ScaledObject of one agent, plus the agent's image built and pushed from `code.build`."""

    deployment_name: pulumi.Output[str]
    namespace: pulumi.Output[str]
    agent_name: pulumi.Output[str]
    image: pulumi.Output[str]

    def __init__(self, name: str, args: AgentPoolArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("voxplane:agents:AgentPool", name, None, opts)
        #: Agent pools under one parent (a RegionStack) share one agent base image.
        self._pool_parent = opts.parent if opts is not None else None
        agent = args.agent
        image = self._image(name, args)
        objects = build_agent_pool(args.region, agent, image=IMAGE_PLACEHOLDER)
        ns = tenant_namespace(args.region, agent.tenant)
        self.children = register_all(
            name, objects, args.secrets, pulumi.ResourceOptions(parent=self),
            # KEDA's HPA owns replicas once the pool exists; `pulumi up` must not reset them.
            ignore_changes={("Deployment", agent.name): ["spec.replicas"]},
            images={("Deployment", agent.name): image},
        )
        self.deployment = self.children[("Deployment", ns, agent.name)]
        self.deployment_name = self.deployment.urn.apply(lambda _: agent.name)
        self.namespace = pulumi.Output.from_input(ns)
        self.agent_name = pulumi.Output.from_input(agent.scoped_name)
        self.image = pulumi.Output.from_input(image)
        self.register_outputs(
            {
                "deployment_name": self.deployment_name,
                "namespace": self.namespace,
                "agent_name": self.agent_name,
                "image": self.image,
            }
        )

    def _image(self, name: str, args: AgentPoolArgs) -> pulumi.Input[str]:
        """The prebuilt image, or the pushed digest (`repo@sha256:…`) of the image built from
        `code.build`. The tag is the build folder's content hash, so an unchanged folder is not
        rebuilt and the Deployment only rolls when the code changed."""
        code, agent = args.agent.code, args.agent
        if code.build is None:
            assert code.image is not None  # schema: exactly one of image, build
            return code.image
        registry = require_registry(args.image_registry, f"agent {agent.scoped_name!r} builds from {code.build!r}")
        dockerfile_name = code.dockerfile or "Dockerfile"
        context = os.path.join(args.repo_root, code.build.rstrip("/"))
        base = (
            agent_base_image(name, args.region.name, registry, args.repo_root, args.build_images, self,
                             self._pool_parent)
            if agent_base.dockerfile_uses_base(Path(os.path.join(context, dockerfile_name)))
            else None
        )
        return folder_image(
            f"{name}-image",
            context=context,
            repository=f"{registry}/{agent.tenant}-{agent.name}",
            build=args.build_images,
            dockerfile=dockerfile_name,
            base_tag=base.tag if base else None,
            build_args={agent_base.BUILD_ARG: base.ref} if base else None,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[base.image] if base and base.image else None),
        ).ref


#: One base image per parent resource (a RegionStack's agent pools share it); weak, so a program
#: run under mocks (render, plan: several in one process) never sees another run's resource.
_BASES: "weakref.WeakKeyDictionary[pulumi.Resource, dict[tuple[str, str], FolderImage]]" = weakref.WeakKeyDictionary()


def agent_base_image(
    pool_name: str,
    region: str,
    registry: str,
    repo_root: str,
    build_images: bool,
    pool: pulumi.Resource,
    parent: Optional[pulumi.Resource],
) -> FolderImage:
    """The base image the agents under `parent` build on (its `ref` is what an agent's build gets
    as VOXPLANE_AGENT_BASE), registered by the first pool that needs it (a child of `parent`,
    else of `pool` when there is no parent to share it under)."""
    context = os.path.join(repo_root, agent_base.FOLDER)
    if not os.path.isfile(os.path.join(context, "Dockerfile")):
        raise pulumi.RunError(
            f"an agent's Dockerfile builds FROM ${{{agent_base.BUILD_ARG}}} but {agent_base.FOLDER}/Dockerfile "
            f"(the platform's agent base image) is missing under {repo_root!r}"
        )
    key = (registry, build_context_hash(context))
    shared = _BASES.setdefault(parent, {}) if parent is not None else {}
    if key not in shared:
        shared[key] = folder_image(
            f"{region}-{agent_base.IMAGE}" if parent is not None else f"{pool_name}-base-image",
            context=context,
            repository=f"{registry}/{agent_base.IMAGE}",
            build=build_images,
            opts=pulumi.ResourceOptions(parent=parent if parent is not None else pool),
        )
    return shared[key]
