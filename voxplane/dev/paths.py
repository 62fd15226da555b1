"""Where the local stand-ins keep their state, and how files that hold secrets are written there.

- `cache_dir()`: built binaries and the dev servers' state (`$VOXPLANE_CACHE`, ~/.cache/voxplane);
- `dev_dir()`: the dev cluster, the Pulumi state backend, passphrase and dev secrets
  (`$VOXPLANE_DEV_STATE`, `cache_dir()/dev`); `cluster_dir()`: the dev cluster's own part of it;
- `SCRIPTS`: the repository's installers (`scripts/ensure-*.sh`), next to this package;
- `write_private()`: the one way a file holding a secret is written (0600 before its first byte).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SCRIPTS", "VENV", "cache_dir", "cluster_dir", "dev_dir", "write_private"]

_REPO = Path(__file__).resolve().parents[2]
#: scripts/ of the checkout this package runs from (the installers of servers and toolchain).
SCRIPTS = _REPO / "scripts"
#: The checkout's virtual environment (the Pulumi language host runs its `python`).
VENV = _REPO / ".venv"


def cache_dir() -> Path:
    """`$VOXPLANE_CACHE`, or ~/.cache/voxplane (the same default as the scripts/ensure-*.sh)."""
    env = os.environ.get("VOXPLANE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "voxplane"


def dev_dir() -> Path:
    """`$VOXPLANE_DEV_STATE`, else `cache_dir()/dev`: the dev cluster, state backend,
    passphrase and dev secrets (tests point it at a temporary folder)."""
    env = os.environ.get("VOXPLANE_DEV_STATE")
    return Path(env) if env else cache_dir() / "dev"


def cluster_dir() -> Path:
    """The dev cluster's state (data, keys, kubeconfig, its Prometheus's scrape targets)."""
    return dev_dir() / "cluster"


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` (its folder created), readable by its owner only.

    The file is created 0600 before a byte is written, and an existing file is set to 0600 too
    (O_CREAT's mode applies only to a file it creates), so a secret is never readable by others,
    not even for a moment.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
