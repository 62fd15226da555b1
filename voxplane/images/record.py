"""The digests a pipeline pushed outside Pulumi (`voxplane images push REGION`), where the stack reads them.

`<repository root>/.voxplane/images/<region>.json`:

    {"region": "local",
     "images": {"localhost:5000/voxplane/voxplane-gateway:<content hash>": "sha256:…", …}}

Keys are full `registry/repository:tag` names, and a tag is its build context's content hash: a
recorded digest applies only to the very folder it was built from, so a record left over from an
older checkout, another registry or another region names nothing the program asks for. A stack
that does not build images (`voxplane:buildImages false`) runs `<name>@<digest>` for every image it
finds here and the tag for the others; `render`, `plan` and `drift` run the same program, so they
read the same record. It is machine output, not source: `.voxplane/` is ignored by git, and a
pipeline hands the file from its build job to its deploy job.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Mapping

#: The record's folder, relative to the repository root.
FOLDER = Path(".voxplane") / "images"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class RecordError(ValueError):
    """A record file that is not one; the message names the file and what is wrong."""


def record_path(root: Path, region: str) -> Path:
    return root / FOLDER / f"{region}.json"


def read_record(path: Path) -> dict[str, str]:
    """Name → digest of every image in the record at `path`; empty when there is none."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise RecordError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}:{exc.lineno}:{exc.colno}: not JSON ({exc.msg}); `voxplane images push` rewrites it") from None
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, dict):
        raise RecordError(f"{path}: images: missing or not a mapping of image name to digest")
    for name, digest in images.items():
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            raise RecordError(f"{path}: images.{name}: {digest!r} is not a sha256 digest")
    return dict(images)


def write_record(path: Path, region: str, digests: Mapping[str, str]) -> None:
    """Add `digests` to the record at `path` (what it held for other names stays); atomically."""
    images = {**read_record(path), **digests}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump({"region": region, "images": dict(sorted(images.items()))}, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
