"""A controller as its image runs it (voxplane/controllers/<name>/Dockerfile), without a Docker
engine: the package copied under empty `voxplane` and `voxplane.controllers` packages, and an
interpreter with only the image's locked requirements (scripts/ensure-image-venv.sh)."""

from __future__ import annotations

import shutil
from pathlib import Path

from voxplane.components.deletion_cost import CONTROLLER_CONTEXT

from ..support.image_venv import image_python

CONTEXT = Path(CONTROLLER_CONTEXT)
NAME = CONTEXT.name


def controller_image_python() -> str:
    """The interpreter of the venv holding exactly the controller image's locked requirements."""
    return str(image_python(f"voxplane/controllers/{NAME}"))


def stage_image_context(dst: Path) -> Path:
    """`dst` laid out as the image's /opt/voxplane: empty `voxplane` and `voxplane.controllers`
    packages holding a copy of the build context as `voxplane.controllers.<name>`."""
    (dst / "voxplane" / "controllers").mkdir(parents=True)
    (dst / "voxplane" / "__init__.py").write_text("")
    (dst / "voxplane" / "controllers" / "__init__.py").write_text("")
    shutil.copytree(CONTEXT, dst / "voxplane" / "controllers" / NAME, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dst
