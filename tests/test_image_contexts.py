"""Each Python image of the platform (the gateway, the controllers, the GPU preflight) holds all it
runs: its package imports only itself, the standard library and its locked requirements; the lock
pins every requirement by hash and the Dockerfile installs exactly it on the platform's one base,
pinned by digest; and every module imports, and the container's command answers, from a copy laid
out as the image lays it out with an interpreter holding only those requirements
(tests/support/image_context.py). The tests beside each package run it that way against real
servers; tests/images builds and runs the images themselves."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .support.image_context import context_python, stage
from .support.repo import REPO


@dataclass(frozen=True)
class ImageContext:
    context: str
    #: Import names of the locked requirements' top-level packages, by requirement name.
    requirements: dict[str, str]

    @property
    def folder(self) -> Path:
        return REPO / self.context

    @property
    def package(self) -> str:
        return self.context.replace("/", ".")


IMAGES = [
    ImageContext("voxplane/gateway", {"aiohttp": "aiohttp", "pyjwt": "jwt", "livekit-protocol": "livekit",
                                      "protobuf": "google", "click": "click", "prometheus-client": "prometheus_client",
                                      "token-bucket": "token_bucket"}),
    ImageContext("voxplane/controllers/deletion_cost", {"kubernetes": "kubernetes", "requests": "requests",
                                                        "prometheus-client": "prometheus_client",
                                                        "token-bucket": "token_bucket", "click": "click"}),
    ImageContext("voxplane/controllers/recovery", {"livekit-api": "livekit", "livekit-protocol": "livekit",
                                                   "protobuf": "google", "aiohttp": "aiohttp", "pyjwt": "jwt",
                                                   "click": "click", "prometheus-client": "prometheus_client"}),
    ImageContext("voxplane/gpu_preflight", {"nvidia-ml-py": "pynvml"}),
]
BY_NAME = pytest.mark.parametrize("image", IMAGES, ids=[i.context.rsplit("/", 1)[-1] for i in IMAGES])
#: The platform's one base: the build argument's default, pinned by digest (a stand-in arrives only through it).
BASE = re.compile(r"^ARG VOXPLANE_PYTHON_BASE=(\S+@sha256:[0-9a-f]{64})\nFROM \$\{VOXPLANE_PYTHON_BASE\}$", re.M)


def _imports(path: Path) -> list[tuple[int, str, int]]:
    """(line, module, relative level) of every import in `path`, function-level ones included."""
    out: list[tuple[int, str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.lineno, node.module or "", node.level))
    return out


def _command(image: ImageContext) -> list[str]:
    """The container's command (ENTRYPOINT and CMD, exec form) up to its first option."""
    argv: list[str] = []
    for line in (image.folder / "Dockerfile").read_text().splitlines():
        if line.startswith(("ENTRYPOINT [", "CMD [")):
            argv += json.loads(line.split(" ", 1)[1])
    return list(argv[:next((i for i, a in enumerate(argv) if a.startswith("-") and i > 2), len(argv))])


@BY_NAME
def test_the_package_imports_nothing_else_of_voxplane(image: ImageContext) -> None:
    allowed = set(sys.stdlib_module_names) | set(image.requirements.values()) | {"__future__"}
    depth = image.context.count("/")  # relative levels that stay inside the package: 1
    outside = [
        f"{path.relative_to(REPO)}:{line}: {'.' * level}{module}"
        for path in sorted(p for p in image.folder.rglob("*.py") if "__pycache__" not in p.parts)
        for line, module, level in _imports(path)
        # `..` leaves the package; `voxplane.*` is not in the image (only empty packages above it).
        if level > 1 or (level == 0 and module.split(".")[0] not in allowed)
    ]
    assert outside == [], f"the image holds only {image.context} and its locked requirements"
    # The packages above it are empty in the image: the repository's must import nothing either.
    parents = [REPO.joinpath(*Path(image.context).parts[:d]) / "__init__.py" for d in range(2, depth + 1)]
    assert [p for p in parents if _imports(p)] == []


@BY_NAME
def test_the_lock_pins_every_requirement_and_the_base_is_the_platforms(image: ImageContext) -> None:
    text = (image.folder / "requirements.txt").read_text()
    hashed = re.findall(r"^([A-Za-z0-9_.-]+)==\S+ \\\n(?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+", text, re.M)
    requirements = [line for line in text.splitlines() if line and not line.startswith(("#", " "))]
    assert len(hashed) == len(requirements), "every requirement is pinned with its hashes"
    assert set(hashed) >= set(image.requirements)
    dockerfile = (image.folder / "Dockerfile").read_text()
    assert "--require-hashes --no-deps -r" in dockerfile
    assert BASE.findall(dockerfile), "the base image is pinned by digest"
    agent_base = (REPO / "agents" / "_platform" / "Dockerfile").read_text()
    assert BASE.findall(dockerfile) == BASE.findall(agent_base), "the platform's images share one base"


@pytest.mark.integration
@BY_NAME
def test_every_module_imports_and_the_command_answers_from_the_image_layout(image: ImageContext, tmp_path: Path) -> None:
    staged = stage(image.context, tmp_path / "opt-voxplane")
    names = sorted(image.package + ("" if p.stem == "__init__" else f".{p.stem}")
                   for p in (staged / image.context).glob("*.py"))
    code = "import importlib, voxplane\n" \
           f"assert voxplane.__file__ == {str(staged / 'voxplane' / '__init__.py')!r}, voxplane.__file__\n" \
           f"for name in {names!r}: importlib.import_module(name)\n"
    env = {"PYTHONPATH": str(staged), "PATH": "/usr/bin:/bin"}
    python = context_python(image.context)
    done = subprocess.run([python, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    command = _command(image)
    assert command[:3] == ["python", "-m", image.package], command
    done = subprocess.run([python, *command[1:], "--help"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0 and "usage" in done.stdout.lower(), done.stdout + done.stderr
