"""`voxplane images build|push REGION`: the region's images built outside Pulumi, for pipelines
whose stack does not build (`voxplane:buildImages false`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional, TypeVar

import click

from . import term
from .common import FORMATS, root_option
from .completion import complete_regions


@click.group("images")
def images() -> None:
    """Build and push a region's images with the Docker CLI, as its stack would build them.

    The same images, contexts, Dockerfiles, build arguments and content-hash tags the stack's
    program declares (read from the program itself); BuildKit where the Docker client has it.
    `push` records the pushed digests in .voxplane/images/REGION.json, where the stack reads them:
    a stack with `voxplane:buildImages false` then deploys those digests, and `render`, `plan` and
    `drift` show them.
    """


F = TypeVar("F", bound=Callable[..., Any])


def _options(command: F) -> F:
    """The arguments and options `build` and `push` share."""
    options: list[Callable[[Any], Any]] = [
        click.argument("region", shell_complete=complete_regions),
        click.option("--registry", help="Registry and path to push to [default: the stack's voxplane:imageRegistry]."),
        root_option,
        click.option("--format", "fmt", type=FORMATS, default="text", show_default=True,
                     help="Output format (JSON: a list of {name, tag, digest, status, context, dockerfile})."),
        click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE", envvar="VOXPLANE_BUILD_ARGS",
                     help="Added to every build's arguments (a base image mirror, a package index mirror) "
                          "[env VOXPLANE_BUILD_ARGS, space-separated]."),
        click.option("--network", envvar="VOXPLANE_BUILD_NETWORK",
                     help="The builds' network (`host` reaches a package index on loopback) [env VOXPLANE_BUILD_NETWORK]."),
        click.option("--docker-cli", default="docker", show_default=True, envvar="VOXPLANE_DOCKER_CLI",
                     help="The Docker CLI to run [env VOXPLANE_DOCKER_CLI]; the engine is its DOCKER_HOST."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@images.command("build")
@_options
def build(region: str, registry: Optional[str], root: Path, fmt: str, build_args: tuple[str, ...],
          network: Optional[str], docker_cli: str) -> None:
    """Build REGION's images, tagged as the stack tags them; push nothing, record nothing."""
    _run(region, registry, root, fmt, build_args, network, docker_cli, push=False)


@images.command("push")
@_options
def push(region: str, registry: Optional[str], root: Path, fmt: str, build_args: tuple[str, ...],
         network: Optional[str], docker_cli: str) -> None:
    """Build what the registry lacks, push it, record every digest for REGION's stack.

    An image whose tag the registry already holds is neither built nor pushed: the tag is its
    folder's content hash. Exit 0 when every image is in the registry, 1 otherwise.
    """
    _run(region, registry, root, fmt, build_args, network, docker_cli, push=True)


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _run(region: str, registry: Optional[str], root: Path, fmt: str, build_args: tuple[str, ...],
         network: Optional[str], docker_cli: str, *, push: bool) -> None:
    from ..images.docker import DockerCli, DockerError
    from ..images.publish import publish
    from ..images.record import record_path, write_record
    from ..images.stack import StackImagesError, stack_images
    from ..manifest.crosscheck import stack_config
    from ..manifest.loader import load_region

    extra: dict[str, str] = {}
    for pair in build_args:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            _fail(f"--build-arg {pair!r}: expected KEY=VALUE")
        extra[key] = value
    load_region(root, region)  # manifest problems and an unknown region: the messages every command gives
    registry = (registry or str(stack_config(root, region).get("imageRegistry") or "")).strip().rstrip("/")
    if not registry:
        _fail(f"Pulumi.{region}.yaml sets no voxplane:imageRegistry; pass --registry <registry>/<path>")
    docker = DockerCli(docker_cli)
    try:
        docker.check_engine()
        found = stack_images(region, root.resolve(), registry)
        outcomes = publish(found, docker, push=push, extra_args=extra, network=network,
                           progress=lambda line: term.info(f"images: {line}"))
    except (DockerError, StackImagesError) as exc:
        _fail(str(exc))
    if push:
        record = record_path(root, region)
        write_record(record, region, {o.image.name: o.digest for o in outcomes if o.digest})
        term.info(f"images: recorded {len(outcomes)} digest(s) in {record}")
    if fmt == "json":
        click.echo(json.dumps([o.as_dict() for o in outcomes], indent=2))
        return
    if not outcomes:
        click.echo(f"region {region!r} builds no images")
    for o in outcomes:
        click.echo(f"{o.status:8} {o.image.repository}:{o.image.tag[:12]}…" + (f"  {o.digest}" if o.digest else ""))
