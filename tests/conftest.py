"""Shared fixtures: the repository root, a CLI runner, and manifest trees built in tmp dirs."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import os

import pytest
from click.testing import CliRunner, Result
from hypothesis import settings

# CI (CI=true) explores the same examples on every run, so a landing is judged on the code, not
# on the draw; local runs keep exploring new ones (and replay failures from .hypothesis/).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

from voxplane.cli import main

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = Path(__file__).resolve().parent / "manifests"


def copy_manifests(root: Path) -> Path:
    """`root` made to hold a copy of this repository's manifests, agent programs and stack files."""
    root.mkdir()
    for folder in ("regions", "agents"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for stack in REPO.glob("Pulumi*.yaml"):
        shutil.copy(stack, root / stack.name)
    return root


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    """Invoke `voxplane` in-process; exceptions propagate so a traceback fails the test."""

    def run(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    return run


@pytest.fixture
def manifest_tree(tmp_path: Path) -> Callable[..., Path]:
    """A copy of tests/manifests/base with files added or replaced."""

    def build(overlay: Path | None = None, files: dict[str, str | bytes] | None = None) -> Path:
        root = tmp_path / "repo"
        shutil.copytree(MANIFESTS / "base", root)
        if overlay is not None:
            for src in overlay.rglob("*"):
                if src.is_file() and src.name != "expected.txt":
                    dest = root / src.relative_to(overlay)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, dest)
        for rel, content in (files or {}).items():
            dest = root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(content if isinstance(content, bytes) else content.encode())
        return root

    return build
