"""Images a stack builds from folders of this repository: agents built from source (`code.build`),
the platform's agent base image, and the platform's own programs (`platform_image`: the LiveKit
gateway, the controllers, the LLM router, the GPU preflight).

Each is tagged with its folder's content hash, so the same folder gives the same tag on every
machine: an unchanged folder is not rebuilt and nothing rolls. A stack that builds images
(`voxplane:buildImages`, the default) builds and pushes them, and pods run the pushed digest; one
that does not (render-only, or no Docker engine) deploys the tag, for whoever applies the YAML
to build and push from the same folder — or, when a pipeline built and pushed it outside Pulumi
(`voxplane images push`), the digest it recorded for that very tag (`pushed_digests`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator, Mapping, Optional

import pulumi
import pulumi_docker

#: Stack config key naming the registry (and path) built images are pushed to.
IMAGE_REGISTRY_CONFIG = "voxplane:imageRegistry"
#: Built images are linux/amd64: the node pools run amd64 nodes.
PLATFORM = "linux/amd64"
#: Stand-in for an image while a builder (plain data only) runs; replaced by the real reference,
#: possibly an Output, after the object is copied for registration (`_register.with_image`).
IMAGE_PLACEHOLDER = "voxplane.invalid/pending-image:0"
#: The voxplane package's folder: platform images' contexts are named relative to its parent.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Build-context entries that never change the image's meaning but differ between machines.
_HASH_SKIP_DIRS = {"__pycache__", ".git", ".mypy_cache", ".pytest_cache"}
#: `repository:tag` → digest pushed outside Pulumi (voxplane/images/record.py), for the program
#: being run (`pushed_digests`): what a stack that does not build deploys instead of the tag.
_PUSHED: ContextVar[Mapping[str, str]] = ContextVar("voxplane_pushed_digests", default={})


@contextlib.contextmanager
def pushed_digests(digests: Mapping[str, str]) -> Iterator[None]:
    """Images declared inside this block that the stack does not build run `<name>@<digest>`
    where `digests` has their name (the tag is the folder's content hash, so only an image built
    from the very same folder matches)."""
    token = _PUSHED.set(dict(digests))
    try:
        yield
    finally:
        _PUSHED.reset(token)


@dataclass(frozen=True)
class FolderImage:
    """An image built from a folder.

    Attributes:
        tag: The folder's content hash.
        name: `<repository>:<tag>`, what is pushed.
        ref: What pods run: the pushed digest (`<repository>@sha256:…`) when the stack builds,
            else `name`.
        image: The pulumi-docker Image, when the stack builds.
    """

    tag: str
    name: str
    ref: pulumi.Input[str]
    image: Optional[pulumi_docker.Image]


def folder_image(
    resource_name: str,
    *,
    context: str,
    repository: str,
    build: bool,
    opts: pulumi.ResourceOptions,
    dockerfile: str = "Dockerfile",
    base_tag: Optional[str] = None,
    build_args: Optional[Mapping[str, pulumi.Input[str]]] = None,
) -> FolderImage:
    """The image of `context` (built with its `dockerfile`) in `repository`; `base_tag` is the
    content hash of the image it builds on, so a change there changes this tag too."""
    tag = build_context_hash(context, dockerfile, base=base_tag)
    name = f"{repository}:{tag}"
    if not build:
        digest = _PUSHED.get().get(name)
        return FolderImage(tag, name, f"{name}@{digest}" if digest else name, None)
    image = pulumi_docker.Image(
        resource_name,
        build=pulumi_docker.DockerBuildArgs(
            context=context,
            # pulumi-docker resolves the Dockerfile against the working directory, not the context.
            dockerfile=os.path.join(context, dockerfile),
            platform=PLATFORM,
            args=dict(build_args) if build_args else None,
        ),
        image_name=name,
        opts=opts,
    )
    # The digest, not the tag: a rebuild changes the pod template and rolls the workload.
    return FolderImage(tag, name, image.repo_digest, image)


def platform_image(resource_name: str, *, context: str, repository: str, image_registry: Optional[str],
                   build: bool, needed_by: str, parent: pulumi.Resource) -> FolderImage:
    """The image of one of voxplane's own programs, whose package `context` is its build context,
    in the stack's registry under `repository`. A stack that neither builds nor names a registry (a
    dev region rendered only) deploys the bare `repository:<hash>`: the tag alone names what to
    build from the folder. `needed_by` says what needs the image when no registry is set."""
    if image_registry or build:
        package = os.path.relpath(context, os.path.dirname(_PACKAGE_ROOT)).replace(os.sep, "/")
        registry = require_registry(image_registry, f"{needed_by}, whose image the stack builds from {package}")
        repository = f"{registry}/{repository}"
    return folder_image(f"{resource_name}-image", context=context, repository=repository, build=build,
                        opts=pulumi.ResourceOptions(parent=parent))


def require_registry(registry: Optional[str], what: str) -> str:
    """`registry` without a trailing slash, or a RunError saying that `what` needs one."""
    if registry and registry.strip():
        return registry.strip().rstrip("/")
    # The Python SDK has no ResourceError; RunError ends the program with this message and no traceback.
    raise pulumi.RunError(
        f"{what} but no image registry is set; set stack config `{IMAGE_REGISTRY_CONFIG}` "
        f"(pulumi config set {IMAGE_REGISTRY_CONFIG} <registry>/<path>)"
    )


def build_context_hash(context: str, dockerfile: str = "Dockerfile", *, base: Optional[str] = None) -> str:
    """sha256 over every file under `context` (relative path and bytes, in sorted path order)
    and the Dockerfile name, and the base image's own hash when the image builds on another
    image of the stack (`base`): the same folders give the same tag on every machine."""
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
