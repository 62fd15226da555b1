"""Build a region's images with the Docker CLI, push what the registry lacks, say what each is.

A tag is its build context's content hash (voxplane/components/images.py), so a registry that already holds
the tag holds this very folder's image: it is neither built nor pushed again ("present"), and the
digest the registry has is the one recorded, so an unchanged folder never rolls a pod. An image
built FROM another image of the stack gets that image's pushed digest as its build argument, as
`pulumi up` passes it (`ImageBuild.needs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Mapping, Optional, Sequence

from .docker import DockerCli
from .stack import ImageBuild

Status = Literal["pushed", "present", "built"]


@dataclass(frozen=True)
class Outcome:
    """What became of one image: `pushed` by this run, `present` in the registry already (nothing
    built or pushed), or `built` only (`voxplane images build`: no push, no digest)."""

    image: ImageBuild
    status: Status
    digest: Optional[str]

    def as_dict(self) -> dict[str, object]:
        return {"name": self.image.repository, "tag": self.image.tag, "digest": self.digest, "status": self.status,
                "context": str(self.image.context), "dockerfile": str(self.image.dockerfile)}


def publish(images: Sequence[ImageBuild], docker: DockerCli, *, push: bool,
            extra_args: Optional[Mapping[str, str]] = None, network: Optional[str] = None,
            log: Optional[Path] = None, progress: Callable[[str], None] = lambda _: None) -> list[Outcome]:
    """Build `images` (in their order: each after those it needs); with `push`, only those the
    registry lacks, each pushed right after its build. `extra_args` are added to every build's
    arguments (a base stand-in, a package index mirror), `network` is the builds' network."""
    digests: dict[str, str] = {}
    out: list[Outcome] = []
    for image in images:
        if push:
            remote = docker.remote_digest(image.name)
            if remote is not None:
                progress(f"{image.name}: already in the registry ({remote[:19]}…)")
                digests[image.name] = remote
                out.append(Outcome(image, "present", remote))
                continue
            args = image.build_args(digests)
        else:
            # Nothing is pushed: an image built FROM another one of the stack gets its local tag.
            args = {**image.args, **{arg: name for arg, name in image.needs.items()}}
        progress(f"{image.name}: building {image.context}")
        docker.build(context=image.context, dockerfile=image.dockerfile, tag=image.name,
                     args={**args, **(extra_args or {})}, platform=image.platform, network=network, log=log)
        if not push:
            out.append(Outcome(image, "built", None))
            continue
        progress(f"{image.name}: pushing")
        digests[image.name] = docker.push(image.name, log=log)
        out.append(Outcome(image, "pushed", digests[image.name]))
    return out
