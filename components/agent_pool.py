"""AgentPool: one agent manifest's autoscaled worker pool in a region, and its image when the
manifest builds from source (`code.build`).

An agent whose Dockerfile starts `FROM ${VOXPLANE_AGENT_BASE}` builds on the platform's agent base
image (`agents/_platform`, `voxplane.agent_base`): the base is built and pushed first, once per
region stack, and its digest is passed to the agent's build as that argument; the base folder's
hash is part of the agent's image tag, so a change of the shared glue rolls every such pool."""

from __future__ import annotations

import copy
import hashlib
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pulumi
import pulumi_docker
import pulumi_kubernetes as k8s

from voxplane import agent_base
from voxplane.desired.agent_pool import build_agent_pool, secret_name
from voxplane.desired.common import K8sObject, tenant_namespace
from voxplane.model import Agent, Region

from ._register import register_all, resolve_secrets
from .secrets import SecretResolver

#: Stack config key naming the registry images built from `code.build` are pushed to.
IMAGE_REGISTRY_CONFIG = "voxplane:imageRegistry"
#: Built images are linux/amd64: the agent node pools run amd64 nodes.
PLATFORM = "linux/amd64"
#: Stand-in for the image while the builder (plain data only) runs; replaced by the real
#: reference — possibly an Output — after the object is copied for registration.
IMAGE_PLACEHOLDER = "voxplane.invalid/pending-image:0"
#: Build-context entries that never change the image's meaning but differ between machines.
_HASH_SKIP_DIRS = {"__pycache__", ".git", ".mypy_cache", ".pytest_cache"}


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
        deployment = next(o for o in objects if o["kind"] == "Deployment")
        self.children = register_all(
            name, [o for o in objects if o is not deployment], args.secrets, pulumi.ResourceOptions(parent=self)
        )
        # Registered here rather than by register_all: its image may be an Output (the pushed
        # digest), which register_all's deep copy of plain data cannot carry.
        ns = tenant_namespace(args.region, agent.tenant)
        secret = self.children.get(("Secret", ns, secret_name(agent)))
        self.deployment = _register_deployment(
            name,
            deployment,
            image,
            args.secrets,
            pulumi.ResourceOptions(
                parent=self,
                depends_on=[secret] if secret is not None else None,
                # KEDA's HPA owns replicas once the pool exists; `pulumi up` must not reset them.
                ignore_changes=["spec.replicas"],
            ),
        )
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
        if not args.image_registry:
            # The Python SDK has no ResourceError; RunError ends the program with this message and
            # no traceback.
            raise pulumi.RunError(
                f"agent {agent.scoped_name!r} builds from {code.build!r} but no image registry is set; "
                f"set stack config `{IMAGE_REGISTRY_CONFIG}` (pulumi config set {IMAGE_REGISTRY_CONFIG} <registry>/<path>)"
            )
        dockerfile_name = code.dockerfile or "Dockerfile"
        context = os.path.join(args.repo_root, code.build.rstrip("/"))
        dockerfile = os.path.join(context, dockerfile_name)
        base = (
            agent_base_image(name, args.region.name, args.image_registry, args.repo_root, args.build_images, self,
                             self._pool_parent)
            if agent_base.dockerfile_uses_base(Path(dockerfile))
            else None
        )
        tag = build_context_hash(context, dockerfile_name, base=base.tag if base else None)
        image_name = f"{args.image_registry.rstrip('/')}/{agent.tenant}-{agent.name}:{tag}"
        if not args.build_images:
            return image_name
        built = pulumi_docker.Image(
            f"{name}-image",
            build=pulumi_docker.DockerBuildArgs(
                context=context,
                # pulumi-docker resolves the Dockerfile against the working directory, not the context.
                dockerfile=dockerfile,
                platform=PLATFORM,
                args={agent_base.BUILD_ARG: base.ref} if base else None,
            ),
            image_name=image_name,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[base.image] if base and base.image else None),
        )
        # The digest, not the tag: a rebuild changes the pod template and rolls the Deployment.
        return built.repo_digest


@dataclass(frozen=True)
class AgentBaseImage:
    """The platform's agent base image (`agents/_platform`) as the agents of one stack build on it.

    Attributes:
        tag: The base folder's content hash (part of each agent image tag built on it).
        ref: What an agent's build gets as VOXPLANE_AGENT_BASE: the pushed digest, or (not
            building) the `<registry>/voxplane-agent-base:<tag>` name to build and push by hand.
        image: The pulumi-docker Image, when images are built.
    """

    tag: str
    ref: pulumi.Input[str]
    image: Optional[pulumi_docker.Image]


#: One base image per parent resource (a RegionStack's agent pools share it); weak, so a program
#: run under mocks (render, plan: several in one process) never sees another run's resource.
_BASES: "weakref.WeakKeyDictionary[pulumi.Resource, dict[tuple[str, str], AgentBaseImage]]" = weakref.WeakKeyDictionary()


def agent_base_image(
    pool_name: str,
    region: str,
    registry: str,
    repo_root: str,
    build_images: bool,
    pool: pulumi.Resource,
    parent: Optional[pulumi.Resource],
) -> AgentBaseImage:
    """The base image the agents under `parent` build on, registered by the first pool that needs
    it (a child of `parent`, else of `pool` when there is no parent to share it under)."""
    context = os.path.join(repo_root, agent_base.FOLDER)
    if not os.path.isfile(os.path.join(context, "Dockerfile")):
        raise pulumi.RunError(
            f"an agent's Dockerfile builds FROM ${{{agent_base.BUILD_ARG}}} but {agent_base.FOLDER}/Dockerfile "
            f"(the platform's agent base image) is missing under {repo_root!r}"
        )
    tag = build_context_hash(context)
    name = f"{registry.rstrip('/')}/{agent_base.IMAGE}:{tag}"
    key = (registry, tag)
    shared = _BASES.setdefault(parent, {}) if parent is not None else {}
    if key in shared:
        return shared[key]
    if not build_images:
        result = AgentBaseImage(tag, name, None)
    else:
        image = pulumi_docker.Image(
            f"{region}-{agent_base.IMAGE}" if parent is not None else f"{pool_name}-base-image",
            build=pulumi_docker.DockerBuildArgs(
                context=context, dockerfile=os.path.join(context, "Dockerfile"), platform=PLATFORM
            ),
            image_name=name,
            opts=pulumi.ResourceOptions(parent=parent if parent is not None else pool),
        )
        result = AgentBaseImage(tag, image.repo_digest, image)
    shared[key] = result
    return result


def build_context_hash(context: str, dockerfile: str = "Dockerfile", *, base: Optional[str] = None) -> str:
    """sha256 over every file under `context` (relative path and bytes, in sorted path order)
    and the Dockerfile name, and the base image's own hash when the image builds on the platform's
    agent base (`base`): the same folders give the same tag on every machine."""
    digest = hashlib.sha256()
    digest.update(f"dockerfile\0{dockerfile}\0".encode())
    if base is not None:
        digest.update(f"base\0{base}\0".encode())
    files: list[str] = []
    for folder, dirs, names in os.walk(context):
        dirs[:] = [d for d in dirs if d not in _HASH_SKIP_DIRS]
        files += [os.path.join(folder, n) for n in names if not n.endswith(".pyc")]
    for path in sorted(files, key=lambda p: os.path.relpath(p, context).replace(os.sep, "/")):
        rel = os.path.relpath(path, context).replace(os.sep, "/")
        with open(path, "rb") as f:
            data = f.read()
        # Length-prefixed, so no two different trees produce the same byte stream.
        digest.update(f"{len(rel)}:{rel}\0{len(data)}:".encode())
        digest.update(data)
    return digest.hexdigest()


def _register_deployment(
    prefix: str,
    obj: K8sObject,
    image: pulumi.Input[str],
    secrets: SecretResolver,
    opts: pulumi.ResourceOptions,
) -> k8s.apps.v1.Deployment:
    """Register the Deployment under register_all's naming (`<prefix>-deployment-<name>`), with
    the placeholder image replaced by `image` after the plain data is copied."""
    obj = resolve_secrets(copy.deepcopy(obj), secrets)
    container = obj["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == IMAGE_PLACEHOLDER
    container["image"] = image
    meta = obj["metadata"]
    return k8s.apps.v1.Deployment(f"{prefix}-deployment-{meta['name']}", metadata=meta, spec=obj["spec"], opts=opts)
