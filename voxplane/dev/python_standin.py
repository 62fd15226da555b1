"""A stand-in for the Python base image, where its registry cannot be reached.

The production Dockerfiles start `FROM` a digest-pinned `python:3.11.16-slim-bookworm@sha256:…`
(their default of the build argument `VOXPLANE_PYTHON_BASE`), which only its registry serves. The
stand-in is made from Debian's own packages (`mmdebstrap`, variant minbase) and offers what those
Dockerfiles rely on, and nothing more:

- `python`, Python 3.11 (`python3` and Debian's `python-is-python3` link; the official image's
  3.11.16 is Debian's 3.11.2 here);
- `pip` that installs into the system interpreter (`python3-pip`, with the PEP 668 marker
  removed: the official image has none, so its Dockerfiles `pip install` without a venv);
- `groupadd`/`useradd` (minbase's `passwd`), `/bin/sh`;
- PATH with /usr/local/bin first (where pip puts scripts), as the official image sets it.

What the official image has and the stand-in lacks (its own build of CPython under /usr/local,
`LANG=C.UTF-8`, newer pip) is not relied on by any Dockerfile here; a Dockerfile that starts to
rely on more fails its build in the suite, which is the point.

The root filesystem is cached as a tarball keyed by this recipe and the host's Debian sources;
it is imported into the engine once per engine (an import records its own creation time, so the
same tarball imported twice gives two images).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from ..images.docker import DockerCli

#: The build argument the production Dockerfiles take their base from (default: the pinned image).
BUILD_ARG = "VOXPLANE_PYTHON_BASE"
SUITE = "bookworm"
PACKAGES = ("python3", "python3-pip", "python-is-python3")
#: Customize hooks run on the finished root ($1): the official image has no PEP 668 marker.
HOOKS = ('rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED',)
#: The image's environment (`docker import --change`): the official image's PATH.
CHANGES = ("ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
#: Where the host's apt finds Debian (passed to mmdebstrap as a sources file, never a host name).
HOST_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))


class StandInError(RuntimeError):
    """The stand-in could not be made or imported; the message says why."""


def _sources() -> Path:
    for path in HOST_SOURCES:
        if path.is_file() and path.read_text().strip():
            return path
    raise StandInError(f"no Debian sources on this host ({' or '.join(map(str, HOST_SOURCES))}); mmdebstrap needs one")


def recipe_key() -> str:
    recipe = "\n".join([SUITE, "minbase", *PACKAGES, *HOOKS, *CHANGES, _sources().read_text()])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def image_ref() -> str:
    """The stand-in's name in an engine: its recipe's key as the tag."""
    return f"voxplane-python-standin:{recipe_key()}"


def ensure_tarball(cache: Path, progress: Callable[[str], None]) -> Path:
    """The stand-in's root filesystem as a tarball (made once: ~25-60 s, ~245 MB)."""
    tar = cache / f"python-standin-{recipe_key()}.tar"
    if tar.is_file():
        progress(f"python base stand-in: cached {tar}")
        return tar
    if shutil.which("mmdebstrap") is None:
        raise StandInError("mmdebstrap not found (scripts/ensure-images.sh installs it)")
    progress(f"python base stand-in: mmdebstrap {SUITE} minbase + {', '.join(PACKAGES)} into {tar} "
             f"(usually 25-60 s cold, ~245 MB)")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".standin-", dir=cache) as tmp:
        partial = Path(tmp) / tar.name
        argv = ["mmdebstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", "--format=tar",
                *[f"--customize-hook={hook}" for hook in HOOKS], SUITE, str(partial), str(_sources())]
        done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
            raise StandInError(f"mmdebstrap failed (exit {done.returncode}):\n{tail}")
        partial.rename(tar)
    return tar


def ensure_imported(docker: DockerCli, tar: Path, progress: Callable[[str], None]) -> str:
    """The stand-in's reference in the engine `docker` talks to, imported if it is not there yet."""
    ref = image_ref()
    if docker.has_local(ref):
        return ref
    progress(f"python base stand-in: importing {tar.name} as {ref} (~10 s)")
    argv = ["import", *[arg for change in CHANGES for arg in ("--change", change)], str(tar), ref]
    done = subprocess.run([docker.executable, *argv], env=docker.env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise StandInError(f"docker import of the stand-in failed: {(done.stderr or done.stdout).strip()[-500:]}")
    return ref
