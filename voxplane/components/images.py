"""Images a stack builds from folders of this repository: agents built from source (`code.build`),
the platform's agent base image and the LiveKit gateway.

Each is tagged with its folder's content hash, so the same folder gives the same tag on every
machine: an unchanged folder is not rebuilt and nothing rolls. A stack that builds images
(`voxplane:buildImages`, the default) builds and pushes them, and pods run the pushed digest; one
that does not (render-only, or no Docker engine) deploys the tag, for whoever applies the YAML
to build and push from the same folder.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Mapping, Optional

import pulumi
import pulumi_docker

#: Stack config key naming the registry (and path) built images are pushed to.
IMAGE_REGISTRY_CONFIG = "voxplane:imageRegistry"
#: Built images are linux/amd64: the node pools run amd64 nodes.
PLATFORM = "linux/amd64"
#: Stand-in for an image while a builder (plain data only) runs; replaced by the real reference,
#: possibly an Output, after the object is copied for registration (`_register.with_image`).
IMAGE_PLACEHOLDER = "voxplane.invalid/pending-image:0"
#: Build-context entries that never change the image's meaning but differ between machines.
_HASH_SKIP_DIRS = {"__pycache__", ".git", ".mypy_cache", ".pytest_cache"}


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
        return FolderImage(tag, name, name, None)
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
