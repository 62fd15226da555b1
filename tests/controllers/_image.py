"""A controller as its image runs it (voxplane/controllers/<name>/Dockerfile), without a Docker
engine (tests/support/image_context.py)."""

from __future__ import annotations

from pathlib import Path

from voxplane.components.deletion_cost import CONTROLLER_CONTEXT

from ..support.image_context import context_python, stage

CONTEXT = Path(CONTROLLER_CONTEXT)
NAME = CONTEXT.name


def controller_image_python() -> str:
    """The interpreter of the venv holding exactly the controller image's locked requirements."""
    return context_python(CONTROLLER_CONTEXT)


def stage_image_context(dst: Path) -> Path:
    """`dst` laid out as the image's /opt/voxplane: the package as `voxplane.controllers.<name>`."""
    return stage(CONTROLLER_CONTEXT, dst)
