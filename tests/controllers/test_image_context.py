"""The deletion-cost controller's image build context (voxplane/controllers/deletion_cost, built by
components/deletion_cost.py) holds all it runs: the package imports only itself, the standard
library and its locked requirements, and every module imports from a copy laid out as the image
lays it out, with an interpreter holding only those requirements. (The integration test in this
folder runs the controller that way against a real API server and Prometheus.)"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ..support.repo import REPO
from ._image import CONTEXT, NAME, controller_image_python, stage_image_context

#: Import names of the locked requirements' top-level packages (requirements.txt's header).
REQUIREMENT_MODULES = {"kubernetes": "kubernetes", "requests": "requests", "prometheus-client": "prometheus_client",
                       "token-bucket": "token_bucket", "click": "click"}


def _modules() -> list[Path]:
    return sorted(p for p in CONTEXT.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> list[tuple[int, str, int]]:
    """(line, module, relative level) of every import in `path`, function-level ones included."""
    out: list[tuple[int, str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.lineno, node.module or "", node.level))
    return out


def test_the_package_imports_nothing_else_of_voxplane() -> None:
    allowed = set(sys.stdlib_module_names) | set(REQUIREMENT_MODULES.values()) | {"__future__"}
    outside = [
        f"{path.relative_to(REPO)}:{line}: {'.' * level}{module}"
        for path in _modules()
        for line, module, level in _imports(path)
        # `..` leaves the package; `voxplane.*` is not in the image (only empty packages above it).
        if level > 1 or (level == 0 and module.split(".")[0] not in allowed)
    ]
    assert outside == [], "the image holds only the controller package and its locked requirements"
    # The image's `voxplane.controllers` is empty: the repository's must import nothing either.
    init = REPO / "voxplane" / "controllers" / "__init__.py"
    assert _imports(init) == []


def test_the_lock_pins_every_requirement_by_hash() -> None:
    text = (CONTEXT / "requirements.txt").read_text()
    hashed = re.findall(r"^([A-Za-z0-9_.-]+)==\S+ \\\n(?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+", text, re.M)
    requirements = [line for line in text.splitlines() if line and not line.startswith(("#", " "))]
    assert len(hashed) == len(requirements), "every requirement is pinned with its hashes"
    assert set(hashed) >= set(REQUIREMENT_MODULES)
    dockerfile = (CONTEXT / "Dockerfile").read_text()
    assert "--require-hashes --no-deps -r" in dockerfile
    # The base is the build argument's default, pinned by digest (a stand-in arrives only through it).
    base = re.compile(r"^ARG VOXPLANE_PYTHON_BASE=(\S+@sha256:[0-9a-f]{64})\nFROM \$\{VOXPLANE_PYTHON_BASE\}$", re.M)
    assert base.findall(dockerfile), "the base image is pinned by digest"
    gateway = (REPO / "voxplane" / "gateway" / "Dockerfile").read_text()
    assert base.findall(dockerfile) == base.findall(gateway), "the platform's images share one base"


@pytest.mark.integration
def test_every_module_imports_from_the_image_layout(tmp_path: Path) -> None:
    staged = stage_image_context(tmp_path / "opt-voxplane")
    package = f"voxplane.controllers.{NAME}"
    names = sorted(package + ("" if p.stem == "__init__" else f".{p.stem}")
                   for p in (staged / "voxplane" / "controllers" / NAME).glob("*.py"))
    code = "import importlib, voxplane\n" \
           f"assert voxplane.__file__ == {str(staged / 'voxplane' / '__init__.py')!r}, voxplane.__file__\n" \
           f"for name in {names!r}: importlib.import_module(name)\n"
    done = subprocess.run([controller_image_python(), "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(staged), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    # The container's command answers from that layout too.
    done = subprocess.run([controller_image_python(), "-m", package, "run", "--help"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(staged), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and "--config" in done.stdout, done.stderr
