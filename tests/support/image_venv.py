"""The interpreter of an image's locked requirements (scripts/ensure-image-venv.sh, cached): what the
tests run an image's package with, from a copy laid out as the image lays it out."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from .repo import REPO

__all__ = ["image_python"]

ENSURE = REPO / "scripts" / "ensure-image-venv.sh"


@functools.lru_cache(maxsize=None)
def image_python(context: str) -> Path:
    """`bin/python` of the venv holding exactly `context`'s requirements.txt (e.g. "voxplane/gateway").
    A failed build raises with the script's last words (the caller's test fails with them)."""
    done = subprocess.run(["bash", str(ENSURE), context, "--print-path"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/{ENSURE.name} {context} failed:\n{done.stderr[-2000:]}")
    return Path(done.stdout.strip()) / "bin" / "python"
