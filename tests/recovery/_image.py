"""The recovery controller as its image runs it (voxplane/controllers/recovery/Dockerfile), without
a Docker engine (tests/support/image_context.py)."""

from __future__ import annotations

from pathlib import Path

from voxplane.components.recovery import RECOVERY_CONTEXT

from ..support.image_context import context_python, stage

CONTEXT = Path(RECOVERY_CONTEXT)
NAME = CONTEXT.name


def recovery_image_python() -> str:
    """The interpreter of the venv holding exactly the controller image's locked requirements."""
    return context_python(RECOVERY_CONTEXT)


def stage_image_context(dst: Path) -> Path:
    """`dst` laid out as the image's /opt/voxplane: the package as `voxplane.controllers.recovery`."""
    return stage(RECOVERY_CONTEXT, dst)
