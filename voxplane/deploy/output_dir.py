"""An output folder voxplane may write into without destroying anything it did not write.

A folder is voxplane's when it is new, empty, or holds the marker file a previous run left, which
lists every file that run wrote. A re-run removes exactly those files (and the folders they leave
empty) before writing; anything else in the folder stays. Any other folder is refused, so
`--out .` in a clone, or `--out ~/notes`, changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Iterable

MARKER = ".voxplane-output.json"
_MARKER_KIND = "voxplane-output"


class OutputDirError(Exception):
    """The folder cannot be used; the message is one line that says why and what to do."""


def claim(out_dir: Path, purpose: str) -> None:
    """Make OUT_DIR ready for a fresh write: refuse a folder voxplane did not make, and remove
    the files the previous run listed in its marker. Raises OutputDirError, changing nothing."""
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise OutputDirError(f"--out {out_dir}: exists and is not a folder; choose a new or empty folder")
    if not out_dir.exists():
        return
    previous = _read_marker(out_dir)
    if previous is None:
        entries = sorted(p.name for p in out_dir.iterdir())
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise OutputDirError(
                f"--out {out_dir}: folder holds files voxplane did not write ({shown}); "
                f"choose a new or empty folder, or one an earlier `voxplane {purpose}` made"
            )
        return
    for rel in previous:
        path = out_dir / rel
        if path.is_file() and not path.is_symlink():
            path.unlink()
    _remove_empty_folders(out_dir, previous)
    (out_dir / MARKER).unlink()


def seal(out_dir: Path, written: Iterable[Path], purpose: str) -> None:
    """Record WRITTEN (paths under OUT_DIR) in the marker, so the next run may replace them."""
    files = sorted(str(PurePosixPath(p.relative_to(out_dir).as_posix())) for p in written)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).write_text(json.dumps({"kind": _MARKER_KIND, "written_by": f"voxplane {purpose}",
                                              "files": files}, indent=1) + "\n")


def _read_marker(out_dir: Path) -> list[str] | None:
    marker = out_dir / MARKER
    if not marker.is_file() or marker.is_symlink():
        return None
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        raise OutputDirError(f"--out {out_dir}: {MARKER} is unreadable; remove the folder yourself or choose another") from None
    if not isinstance(data, dict) or data.get("kind") != _MARKER_KIND or not isinstance(data.get("files"), list):
        raise OutputDirError(f"--out {out_dir}: {MARKER} was not written by voxplane; choose another folder")
    safe = []
    for rel in data["files"]:
        parts = PurePosixPath(str(rel)).parts
        # Only plain relative paths below the folder: a hand-edited marker cannot point elsewhere.
        if not parts or PurePosixPath(str(rel)).is_absolute() or ".." in parts:
            raise OutputDirError(f"--out {out_dir}: {MARKER} lists {rel!r}, outside the folder; choose another folder")
        safe.append(str(rel))
    return safe


def _remove_empty_folders(out_dir: Path, files: list[str]) -> None:
    folders = {out_dir.joinpath(*PurePosixPath(rel).parts[:i]) for rel in files
               for i in range(1, len(PurePosixPath(rel).parts))}
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()
