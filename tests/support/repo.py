"""The repository the tests run from, and copies of it for tests that edit or run it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["MANIFESTS", "REPO", "copy_checkout", "copy_manifests", "use_free_prometheus_port"]

#: The root of this checkout.
REPO = Path(__file__).resolve().parents[2]
#: Manifest fixtures (tests/manifests/base, tests/manifests/invalid/<case>).
MANIFESTS = REPO / "tests" / "manifests"

#: Not part of a checkout: git's own folder, the venv and what the tools leave (see .gitignore).
_TOP_LEVEL_SKIPPED = {".git", ".venv", "build", "out", ".cache", ".pulumi-state"}
_SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache", ".mypy_cache", ".hypothesis")


def copy_manifests(dest: Path) -> Path:
    """`dest` (created if needed) holding a copy of the repository's manifests: regions/, agents/
    (their programs too, without bytecode) and the stack files `Pulumi*.yaml`."""
    dest.mkdir(parents=True, exist_ok=True)
    for folder in ("regions", "agents"):
        shutil.copytree(REPO / folder, dest / folder, ignore=_SKIPPED)
    for stack in REPO.glob("Pulumi*.yaml"):
        shutil.copyfile(stack, dest / stack.name)
    return dest


def copy_checkout(dest: Path, *, tests: bool = True, link_venv: bool = False) -> Path:
    """A copy of the checkout at `dest`, without .git, the venv, caches and build outputs; links stay
    links (stacks/.venv points at ../.venv). `tests`: with tests/; `link_venv`: `dest/.venv` links
    to this checkout's venv (what `pulumi` runs the program with)."""
    skipped = _TOP_LEVEL_SKIPPED | (set() if tests else {"tests"})

    def ignore(folder: str, names: list[str]) -> set[str]:
        top = skipped & set(names) if Path(folder) == REPO else set()
        return set(_SKIPPED(folder, names)) | top

    shutil.copytree(REPO, dest, symlinks=True, ignore=ignore)
    if link_venv:
        os.symlink(REPO / ".venv", dest / ".venv")
    return dest


def use_free_prometheus_port(root: Path, region: str = "local") -> str:
    """Point `root`'s regions/<region>.yaml `kubernetes.prometheus_url` at a free loopback port
    (the dev cluster starts its Prometheus there), so a test's dev cluster never clashes with a
    running demo's or another test session's. Returns the URL."""
    import re

    from voxplane.dev.ports import free_port

    manifest = root / "regions" / f"{region}.yaml"
    text = manifest.read_text()
    url = f"http://127.0.0.1:{free_port()}"
    new, count = re.subn(r"(?m)^(  prometheus_url: ).*$", rf"\g<1>{url}", text)
    if count == 0:
        assert "\nkubernetes:\n" in text, f"{manifest} has no kubernetes: section"
        new = text.replace("\nkubernetes:\n", f"\nkubernetes:\n  prometheus_url: {url}\n", 1)
    manifest.write_text(new)
    return url
