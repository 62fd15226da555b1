"""The manifest files the working tree changes, so a conflict between two files is told at the one
being edited (a number a new agent claims, not the agent that had it; a copy, not its original).

What changed is what git reports against HEAD: modified, added, deleted and untracked files under
the repository root (one `git status`). Without git, outside a repository, or when a command
passes no root, nothing is known (`None`), and a conflict between two equal files is stated at both.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def changed_files(root: Path) -> set[str] | None:
    """Paths relative to `root` that differ from HEAD (untracked ones included), or None when git
    cannot tell (no repository, no git). A repository without commits has every file changed."""
    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False,
                                  stdin=subprocess.DEVNULL, env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})
        except OSError:
            return None
        return proc.stdout if proc.returncode == 0 else None

    prefix = git("rev-parse", "--show-prefix")  # where root sits inside the repository
    if prefix is None:
        return None
    status = git("status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames", "--", ".")
    if status is None:
        return None
    prefix = prefix.strip()
    out = set()
    for entry in status.split("\0"):
        path = entry[3:]  # "XY path"; paths are relative to the repository's top
        if len(entry) > 3 and path.startswith(prefix):
            out.add(path[len(prefix):])
    return out
