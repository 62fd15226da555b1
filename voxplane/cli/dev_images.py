"""`voxplane dev images up|down|env`: the local image tooling (dev/images.py) in the background."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import click

from ..manifest.problems import ManifestError
from .common import print_problems, root_option


@click.group("images")
def images() -> None:
    """A Docker engine, a registry on localhost:5000 (the `local` stack's voxplane:imageRegistry), a
    package index and a Python base stand-in, all on loopback; the host's network is left alone.
    `voxplane images push local` then builds and pushes the local region's images into it."""


@images.command("up")
@click.option("--region", default="local", show_default=True, help="Region whose images the package index serves wheels for.")
@root_option
def images_up(region: str, root: Path) -> None:
    """Start (or keep) the tooling; print the exports for `eval "$(voxplane dev images up)"`.

    The first run makes the base stand-in (~1 min) and downloads the images' wheels (1-3 min);
    `scripts/ensure-images.sh` installs the engine and registry packages first.
    """
    from ..images.stack import StackImagesError, stack_images
    from ..manifest.loader import UnknownRegion
    from ..dev.images import DEV_REGISTRY_PORT, ImagesError, exports, stderr_progress, up
    from ..dev.package_index import PackageIndexError
    from ..dev.python_standin import StandInError

    try:
        found = stack_images(region, root.resolve(), f"localhost:{DEV_REGISTRY_PORT}/voxplane", every_agent_from_source=True)
        state = up(found, stderr_progress)
    except ManifestError as exc:
        print_problems(exc.problems)
        sys.exit(1)
    except (UnknownRegion, StackImagesError, ImagesError, PackageIndexError, StandInError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(exports(state))
    click.echo("dev images: stop them with `voxplane dev images down`", err=True)


@images.command("prepare")
@click.option("--region", default=None, help="Region whose images the wheels are for (default: every region's, as the suite builds them).")
@root_option
def images_prepare(region: Optional[str], root: Path) -> None:
    """Make the base stand-in and download the images' wheels (cached); start nothing."""
    from ..images.stack import StackImagesError, repository_images, stack_images
    from ..manifest.loader import UnknownRegion
    from ..dev.images import DEV_REGISTRY_PORT, prepare, stderr_progress
    from ..dev.package_index import PackageIndexError
    from ..dev.python_standin import StandInError

    try:
        registry = f"localhost:{DEV_REGISTRY_PORT}/voxplane"
        prepare(repository_images(root.resolve(), registry) if region is None else
                stack_images(region, root.resolve(), registry, every_agent_from_source=True), stderr_progress)
    except ManifestError as exc:
        print_problems(exc.problems)
        sys.exit(1)
    except (UnknownRegion, StackImagesError, PackageIndexError, StandInError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@images.command("down")
def images_down() -> None:
    """Stop what `up` started (the engine stops its containers). Cached layers and pushed images stay."""
    from ..dev.images import down, stderr_progress

    if not down(stderr_progress):
        click.echo("dev images: nothing was running", err=True)


@images.command("env")
def images_env() -> None:
    """Print the exports for the running tooling; exit 1 when it is not running."""
    from ..dev.images import exports, running_state

    state = running_state()
    if state is None:
        click.echo("error: the dev image tooling is not running (`voxplane dev images up`)", err=True)
        sys.exit(1)
    click.echo(exports(state))
