"""What a region's stack builds, as the stack builds it.

The program (`voxplane.deploy.program.run`) is run under the SDK's mock engine, as `voxplane render` runs
it, with image building on and the registry given: every `pulumi_docker.Image` it registers is one
build, with the context, Dockerfile, build arguments and `repository:tag` the stack would hand to
pulumi-docker. Nothing here knows which images exist: a new component that builds through
`voxplane/components/images.folder_image` is picked up as it is.

An image built FROM another image of the stack gets that image's pushed digest as a build argument
(the agents' `VOXPLANE_AGENT_BASE`); under the mock engine that value is the render's placeholder
digest after the other image's name, and `ImageBuild.needs` names it, so the builder can pass the
real digest once it has pushed that image.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from ..manifest.model import Agent, Code, Project
from ..deploy.render import PLACEHOLDER_DIGEST, render

#: The Pulumi type of pulumi-docker's Image resource.
IMAGE_TYPE = "docker:index/image:Image"


class StackImagesError(RuntimeError):
    """The program's images could not be read (a cycle between images, a build without a context)."""


@dataclass(frozen=True)
class ImageBuild:
    """One image the stack builds.

    Attributes:
        resource: The Pulumi resource name (`<region>-gateway-image`, ...), for messages.
        name: `<registry>/<repository>:<tag>`: what is pushed; the tag is the build context's content hash.
        context: The build context (a folder of the repository).
        dockerfile: The Dockerfile, a path (pulumi-docker resolves it against the working directory).
        platform: The platform the stack builds for.
        args: Build arguments as the stack passes them; those in `needs` are placeholders.
        needs: Build argument → name of the image of this stack whose pushed digest it carries.
    """

    resource: str
    name: str
    context: Path
    dockerfile: Path
    platform: Optional[str]
    args: Mapping[str, str] = field(default_factory=dict)
    needs: Mapping[str, str] = field(default_factory=dict)

    @property
    def repository(self) -> str:
        return self.name.rsplit(":", 1)[0]

    @property
    def tag(self) -> str:
        return self.name.rsplit(":", 1)[1]

    def build_args(self, digests: Mapping[str, str]) -> dict[str, str]:
        """The build arguments with each needed image's pushed digest (`digests`: name → sha256:…),
        as `<name>@<digest>`; KeyError when a needed image has no digest yet."""
        return {**self.args, **{arg: f"{name}@{digests[name]}" for arg, name in self.needs.items()}}


def stack_images(region: str, root: Path, registry: str, *, every_agent_from_source: bool = False) -> list[ImageBuild]:
    """The images `region`'s stack builds when it pushes to `registry`, each after those it needs.

    `every_agent_from_source`: also build each agent of the region whose manifest names a
    published image while its folder `agents/<name>/` holds a Dockerfile, as the stack would if
    the manifest said `code.build: agents/<name>` (the suite builds every Dockerfile of the
    repository). Raises what `render` raises for manifests that do not load.
    """
    from ..manifest.loader import load_region

    project = load_region(root, region).project
    if every_agent_from_source:
        project = agents_from_source(project, root)
    result = render(region, root, project=project,
                    extra_config={"voxplane:buildImages": "true", "voxplane:imageRegistry": registry})
    images = [_image(r.name, r.inputs) for r in result.resources if r.type == IMAGE_TYPE]
    return _ordered(images)


def repository_images(root: Path, registry: str) -> list[ImageBuild]:
    """Every image the repository's stacks build, each agent folder from source: the images of every
    region (`stack_images`), once each (a tag is its folder's content hash, the same in every region).
    A region may build an image no other does (the LLM router exists only for a model with more than
    one replica), so the suite builds this set, not one region's."""
    from ..manifest.loader import load

    regions = sorted(load((), root).require_project().regions)
    by_name: dict[str, ImageBuild] = {}
    for region in regions:
        for image in stack_images(region, root, registry, every_agent_from_source=True):
            by_name.setdefault(image.name, image)
    return _ordered(list(by_name.values()))


def agents_from_source(project: Project, root: Path) -> Project:
    """`project` with each agent whose manifest names a published image while `agents/<name>/`
    holds a Dockerfile built from that folder instead (`code.build: agents/<name>`)."""
    def from_source(agent: Agent) -> Agent:
        folder = f"agents/{agent.name}"
        if agent.code.build is None and (root / folder / "Dockerfile").is_file():
            return dataclasses.replace(agent, code=Code(build=folder))
        return agent

    return dataclasses.replace(project, agents=tuple(from_source(a) for a in project.agents))


def _image(resource: str, inputs: Mapping[str, Any]) -> ImageBuild:
    build = inputs.get("build") or {}
    if not build.get("context"):
        raise StackImagesError(f"{resource}: the stack builds it without a build context")
    name = str(inputs["imageName"])
    args: dict[str, str] = {}
    needs: dict[str, str] = {}
    for key, value in (build.get("args") or {}).items():
        value = str(value)
        if value.endswith("@" + PLACEHOLDER_DIGEST):
            needs[key] = value[: -len("@" + PLACEHOLDER_DIGEST)]
        else:
            args[key] = value
    context = Path(build["context"])
    return ImageBuild(resource, name, context, Path(build.get("dockerfile") or context / "Dockerfile"),
                      build.get("platform"), args, needs)


def _ordered(images: list[ImageBuild]) -> list[ImageBuild]:
    """`images` with each one after the images it needs (stable otherwise: by name)."""
    by_name = {i.name: i for i in images}
    done: dict[str, ImageBuild] = {}
    pending = sorted(images, key=lambda i: i.name)
    while pending:
        ready = [i for i in pending if all(n in done for n in i.needs.values())]
        if not ready:
            missing = sorted({n for i in pending for n in i.needs.values() if n not in by_name})
            raise StackImagesError(f"images that need an image the stack does not build: {missing}" if missing
                                   else f"images that need each other: {sorted(i.name for i in pending)}")
        for image in ready:
            done[image.name] = image
        pending = [i for i in pending if i.name not in done]
    return list(done.values())
