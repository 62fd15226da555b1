"""The gateway as its image runs it (voxplane/gateway/Dockerfile), without a Docker engine
(tests/support/image_context.py). For the gateway tests and bench/gateway.py."""

from __future__ import annotations

from pathlib import Path

from voxplane.components.gateway import GATEWAY_CONTEXT

from ..support.image_context import context_python, stage


def gateway_image_python() -> str:
    """The interpreter of the venv holding exactly the gateway image's locked requirements."""
    return context_python(GATEWAY_CONTEXT)


def stage_image_context(dst: Path) -> Path:
    """`dst` laid out as the image's /opt/voxplane: the package as `voxplane.gateway`."""
    return stage(GATEWAY_CONTEXT, dst)
