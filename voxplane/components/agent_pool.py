"""AgentPool: one agent manifest's autoscaled worker pool in a region, and its image when the
manifest builds from source (`code.build`).

An agent whose Dockerfile starts `FROM ${VOXPLANE_AGENT_BASE}` builds on the platform's agent base
image (`agents/_platform`, `voxplane.deploy.agent_base`). The region stack registers that base once
(`agent_base_image`) and hands it to each pool that builds on it: the base is built and pushed
first, and its digest is passed to the agent's build as that argument; the base folder's hash is
part of the agent's image tag, so a change of the shared glue rolls every such pool."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import pulumi

from voxplane.deploy import agent_base
from voxplane.desired.common import K8sObject, tenant_namespace
from voxplane.manifest.model import Agent, Region

from ._register import register_all
from .images import FolderImage, folder_image, require_registry
from .secrets import SecretResolver


@dataclass(frozen=True, kw_only=True)
class AgentPoolArgs:
    """Inputs of an `AgentPool`.

    Attributes:
        region: The region the pool runs in.
        agent: The agent manifest (validated).
        objects: Its objects, as `build_region` gives them (`RegionObjects.agents[scoped name]`),
            the Deployment running `IMAGE_PLACEHOLDER` where the agent builds from source.
        secrets: Resolves the agent's config-held secrets into Pulumi secrets.
        image_registry: Registry (and path) images built from `code.build` are pushed to, e.g.
            `<registry-host>/voxplane` (stack config `voxplane:imageRegistry`). Needed only when the
            agent builds from source.
        repo_root: Repository root; `code.build` is relative to it. A relative root keeps the
            build paths recorded in state the same on every machine.
        build_images: Build and push `code.build` images (needs a Docker engine). False on stacks
            that only render YAML: the Deployment then names the content-hash tag, to be built
            and pushed by whoever applies the YAML.
        base_image: The platform's agent base image (`agent_base_image`), for an agent whose
            Dockerfile builds FROM it; the region stack registers one and passes it to each pool.
    """

    region: Region
    agent: Agent
    objects: Sequence[K8sObject]
    secrets: SecretResolver
    image_registry: Optional[str]
    repo_root: str
    build_images: bool = True
    base_image: Optional[FolderImage] = None


def builds_on_base(agent: Agent, repo_root: str) -> bool:
    """Whether `agent` builds from source with a Dockerfile that starts FROM the agent base image."""
    code = agent.code
    if code.build is None:
        return False
    dockerfile = os.path.join(repo_root, code.build.rstrip("/"), code.dockerfile or "Dockerfile")
    return agent_base.dockerfile_uses_base(Path(dockerfile))


def agent_base_image(name: str, *, registry: str, repo_root: str, build_images: bool,
                     opts: pulumi.ResourceOptions) -> FolderImage:
    """The platform's agent base image, pushed to `registry` (its `ref` is what an agent's build
    gets as VOXPLANE_AGENT_BASE)."""
    context = os.path.join(repo_root, agent_base.FOLDER)
    if not os.path.isfile(os.path.join(context, "Dockerfile")):
        raise pulumi.RunError(
            f"an agent's Dockerfile builds FROM ${{{agent_base.BUILD_ARG}}} but {agent_base.FOLDER}/Dockerfile "
            f"(the platform's agent base image) is missing under {repo_root!r}"
        )
    return folder_image(name, context=context, repository=f"{registry}/{agent_base.IMAGE}", build=build_images,
                        opts=opts)


class AgentPool(pulumi.ComponentResource):
    """Deployment of livekit-agents workers, `<agent>-secrets`, PDB, PodMonitor and KEDA
    ScaledObject of one agent, plus the agent's image built and pushed from `code.build`."""

    deployment_name: pulumi.Output[str]
    namespace: pulumi.Output[str]
    agent_name: pulumi.Output[str]
    image: pulumi.Output[str]

    def __init__(self, name: str, args: AgentPoolArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("voxplane:agents:AgentPool", name, None, opts)
        agent = args.agent
        image = self._image(name, args)
        ns = tenant_namespace(args.region, agent.tenant)
        self.children = register_all(
            name, args.objects, args.secrets, pulumi.ResourceOptions(parent=self),
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
        base = None
        if builds_on_base(agent, args.repo_root):
            base = args.base_image
            if base is None:
                raise pulumi.RunError(
                    f"agent {agent.scoped_name!r} builds FROM ${{{agent_base.BUILD_ARG}}} but its pool {name!r} was "
                    f"given no agent base image (AgentPoolArgs.base_image; a RegionStack passes its own)")
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
