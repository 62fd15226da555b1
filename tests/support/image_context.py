"""A Python image of this repository as it runs, without a Docker engine: its build context copied
to where its Dockerfile puts it (`/opt/voxplane/<the context's path>`, under empty parent
packages), run with an interpreter holding only the image's locked requirements
(scripts/ensure-image-venv.sh). Used by the tests that run the gateway and the controllers as their
images would, and by tests/test_image_contexts.py."""

from __future__ import annotations

import shutil
from pathlib import Path

from .image_venv import image_python
from .repo import REPO

__all__ = ["context_python", "relative", "stage"]


def relative(context: str) -> str:
    """The build context's path in the repository (components name it by its absolute path)."""
    path = Path(context)
    return str(path.resolve().relative_to(REPO) if path.is_absolute() else path)


def context_python(context: str) -> str:
    """The interpreter of the venv holding exactly the image's locked requirements."""
    return str(image_python(relative(context)))


def stage(context: str, dst: Path) -> Path:
    """`dst` laid out as the image's /opt/voxplane: each folder above `context` (e.g.
    `voxplane/controllers`) an empty package, `context` itself a copy of the build context."""
    context = relative(context)
    parts = Path(context).parts
    for depth in range(1, len(parts)):
        package = dst.joinpath(*parts[:depth])
        package.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").write_text("")
    shutil.copytree(REPO / context, dst / context, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dst
