"""The gateway as its image runs it (voxplane/gateway/Dockerfile), without a Docker engine: the
package copied under an empty `voxplane` package, and an interpreter with only the image's locked
requirements (scripts/ensure-image-venv.sh). For the gateway tests and bench/gateway.py."""

from __future__ import annotations

import shutil
from pathlib import Path

from voxplane.components.gateway import GATEWAY_CONTEXT

from ..support.image_venv import image_python


def gateway_image_python() -> str:
    """The interpreter of the venv holding exactly the gateway image's locked requirements."""
    return str(image_python("voxplane/gateway"))


def stage_image_context(dst: Path) -> Path:
    """`dst` laid out as the image's /opt/voxplane (voxplane/gateway/Dockerfile): an empty
    `voxplane` package holding a copy of the build context as `voxplane.gateway`."""
    (dst / "voxplane").mkdir(parents=True)
    (dst / "voxplane" / "__init__.py").write_text("")
    shutil.copytree(Path(GATEWAY_CONTEXT), dst / "voxplane" / "gateway",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dst
