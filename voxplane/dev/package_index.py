"""A package index on loopback for image builds that cannot reach the real one.

`RUN pip install` inside a build reaches the network only as the build's network lets it; where the
host reaches the package index only through a proxy whose CA the host trusts (and the image does
not), a build would need that CA or proxy baked in. Instead the host downloads the wheels the
images install (`ensure_wheels`, with its own pip and trust), this module lays them out as a PEP 503
"simple" index, and builds get its loopback URL through the `PIP_INDEX_URL` build argument: nothing
of the host's network set-up reaches an image. pip treats 127.0.0.0/8 as a secure origin, so plain
HTTP needs no `--trusted-host`.

What is downloaded is what the images' `pip install` lines ask for: each image's `requirements.txt`
after those of the images it is built FROM (an agent installs the base's, then its own), resolved
together as the image resolves them; a file locked with hashes is downloaded exactly
(`--require-hashes --no-deps`), as its Dockerfile installs it. Wheels only, for the images'
interpreter (CPython 3.11 on glibc x86-64): an image never compiles a package.

The wheels are cached in `<cache>/images/wheels-<key>/`, the key taken over every requirements
file and the target; a download counts once its stamp file is written.
"""

from __future__ import annotations

import hashlib
import html
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

#: The images' interpreter and platform (python:3.11-slim-bookworm, and the stand-in: Debian
#: bookworm's Python 3.11 on glibc 2.36), for `pip download --python-version/--platform`.
PYTHON_VERSION = "3.11"
ABI = "cp311"
#: Every manylinux tag glibc 2.36 on x86-64 runs, best first (pip takes `--platform` literally).
PLATFORMS = tuple(f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)) + (
    "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64")
#: Each image installs this file of its build context (and its bases' before it).
REQUIREMENTS = "requirements.txt"
_STAMP = ".complete"


class PackageIndexError(RuntimeError):
    """Wheels could not be downloaded; the message ends with pip's last lines."""


@dataclass(frozen=True)
class RequirementSet:
    """The requirements files one image installs, in its order (bases first); `locked`: installed
    with `--require-hashes --no-deps`, one file at a time."""

    files: tuple[Path, ...]

    @property
    def locked(self) -> bool:
        return any("--hash=" in f.read_text() for f in self.files)


def requirement_sets(chains: Iterable[Sequence[Path]]) -> list[RequirementSet]:
    """One set per image, from its chain of build contexts (base first); images without a
    requirements file install nothing and give no set."""
    out: list[RequirementSet] = []
    for chain in chains:
        files = tuple(c / REQUIREMENTS for c in chain if (c / REQUIREMENTS).is_file())
        if files and RequirementSet(files) not in out:
            out.append(RequirementSet(files))
    return out


def wheels_key(sets: Sequence[RequirementSet]) -> str:
    digest = hashlib.sha256(f"{PYTHON_VERSION} {ABI} {' '.join(PLATFORMS)}\n".encode())
    for s in sets:
        for f in s.files:
            digest.update(f"{f.name}\0{len(f.read_bytes())}\0".encode() + f.read_bytes())
        digest.update(b"\0set\0")
    return digest.hexdigest()[:16]


def ensure_wheels(cache: Path, sets: Sequence[RequirementSet], progress: Callable[[str], None]) -> Path:
    """The folder holding the wheels `sets` need and their simple index (downloaded once)."""
    folder = cache / f"wheels-{wheels_key(sets)}"
    if (folder / _STAMP).is_file():
        progress(f"package index: wheels cached in {folder}")
        return folder
    progress(f"package index: downloading the wheels the images install into {folder} "
             f"(usually 1-3 min cold: ~190 MB; seconds with a warm pip cache)")
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=cache))
    try:
        for s in sets:
            _download(s, work / "files")
        write_simple_index(work / "files", work / "simple")
        (work / _STAMP).write_text("\n".join(str(f) for s in sets for f in s.files) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        work.rename(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    progress(f"package index: {sum(1 for _ in (folder / 'files').iterdir())} wheels in {folder}")
    return folder


def _download(s: RequirementSet, dest: Path) -> None:
    target = ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp", "--abi", ABI,
              *[arg for p in PLATFORMS for arg in ("--platform", p)]]
    runs = ([["--require-hashes", "--no-deps", "-r", str(f)] for f in s.files] if s.locked
            else [[arg for f in s.files for arg in ("-r", str(f))]])
    for reqs in runs:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                               "--dest", str(dest), *target, *reqs],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
            raise PackageIndexError(f"downloading the wheels of {', '.join(map(str, s.files))} failed:\n{tail}")


def _project(filename: str) -> str:
    """PEP 503's normalized project name of a wheel file."""
    return re.sub(r"[-_.]+", "-", filename.split("-", 1)[0]).lower()


def write_simple_index(files: Path, simple: Path) -> None:
    """`simple/<project>/index.html` for every wheel in `files` (links carry the sha256, which pip
    checks), and `simple/index.html` listing the projects."""
    projects: dict[str, list[Path]] = {}
    for wheel in sorted(files.glob("*.whl")):
        projects.setdefault(_project(wheel.name), []).append(wheel)
    simple.mkdir(parents=True, exist_ok=True)
    for name, wheels in projects.items():
        links = "".join(f'<a href="../../files/{html.escape(w.name)}#sha256={hashlib.sha256(w.read_bytes()).hexdigest()}">'
                        f"{html.escape(w.name)}</a><br>\n" for w in wheels)
        (simple / name).mkdir(exist_ok=True)
        (simple / name / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")
    listing = "".join(f'<a href="{name}/">{name}</a><br>\n' for name in sorted(projects))
    (simple / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{listing}</body></html>\n")
