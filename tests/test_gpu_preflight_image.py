"""The GPU preflight image's build context (voxplane/gpu_preflight, built by the region stack)
holds all the preflight runs: the package imports only itself, the standard library and its
locked requirement (nvidia-ml-py), and runs from a copy laid out as the image lays it out, with an
interpreter holding only that requirement (scripts/ensure-image-venv.sh). No Docker engine
runs here: what the image build adds is the base OS and a `pip install` of the same hashed file."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from voxplane.components.images import build_context_hash
from voxplane.components.inference import PREFLIGHT_CONTEXT
from voxplane.desired.inference import PREFLIGHT_REPOSITORY
from voxplane.deploy.render import PLACEHOLDER_DIGEST, render

from .support.repo import REPO
from .support.image_venv import image_python

CONTEXT = Path(PREFLIGHT_CONTEXT)


def _imports(path: Path) -> list[tuple[int, str, int]]:
    out: list[tuple[int, str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.lineno, node.module or "", node.level))
    return out


def test_the_package_imports_nothing_else_of_voxplane() -> None:
    allowed = set(sys.stdlib_module_names) | {"pynvml", "__future__"}
    outside = [f"{path.relative_to(REPO)}:{line}: {'.' * level}{module}"
               for path in sorted(CONTEXT.glob("*.py"))
               for line, module, level in _imports(path)
               if level > 1 or (level == 0 and module.split(".")[0] not in allowed)]
    assert outside == [], "the image holds only voxplane/gpu_preflight and its locked requirement"


def test_the_lock_pins_the_requirement_by_hash_and_matches_the_project() -> None:
    text = (CONTEXT / "requirements.txt").read_text()
    assert re.findall(r"^([A-Za-z0-9_.-]+==\S+) \\\n    --hash=sha256:[0-9a-f]{64}$", text, re.M) == ["nvidia-ml-py==13.615.71"]
    # The version the project's own environment (and these tests) run.
    assert '"nvidia-ml-py==13.615.71"' in (REPO / "pyproject.toml").read_text()
    dockerfile = (CONTEXT / "Dockerfile").read_text()
    assert "pip install --require-hashes --no-deps -r" in dockerfile
    assert re.search(r"^ARG VOXPLANE_PYTHON_BASE=\S+@sha256:[0-9a-f]{64}\nFROM \$\{VOXPLANE_PYTHON_BASE\}$", dockerfile,
                     re.M), "the base image is pinned by digest"
    assert re.search(r"^ENTRYPOINT \[\"python\", \"-m\", \"voxplane.gpu_preflight\"\]$", dockerfile, re.M)


def _preflight_images(region: str) -> list[str]:
    """The image of every model StatefulSet's preflight in the region's render."""
    return [o["spec"]["template"]["spec"]["initContainers"][0]["image"]
            for o in render(region, REPO).kubernetes if o["kind"] == "StatefulSet" and o["metadata"]["namespace"] == "vox-inference"]


def test_the_region_stack_builds_the_image_once_and_every_model_pod_runs_its_pushed_digest() -> None:
    result = render("us-east", REPO)
    built = [r.inputs for r in result.resources if r.type == "docker:index/image:Image" and r.name.endswith("gpu-preflight-image")]
    assert len(built) == 1, [r.name for r in result.resources if r.type == "docker:index/image:Image"]
    tag = build_context_hash(PREFLIGHT_CONTEXT)
    assert built[0]["imageName"] == f"registry.voice.example.com/agents/{PREFLIGHT_REPOSITORY}:{tag}"
    assert built[0]["build"]["context"] == PREFLIGHT_CONTEXT
    assert _preflight_images("us-east") == [f"{built[0]['imageName']}@{PLACEHOLDER_DIGEST}"] * 3


def test_a_stack_that_builds_nothing_deploys_the_content_hash_tag() -> None:
    """local (voxplane:buildImages false): the tag to build and push from the folder."""
    tag = build_context_hash(PREFLIGHT_CONTEXT)
    assert _preflight_images("local") == [f"localhost:5000/voxplane/{PREFLIGHT_REPOSITORY}:{tag}"] * 3


@pytest.mark.integration
def test_from_the_image_layout_without_a_gpu_it_says_so_in_one_line(tmp_path: Path) -> None:
    """The package as the image holds it, run by an interpreter with only the locked nvidia-ml-py:
    on this machine (no NVIDIA driver) one line naming NVMLError_LibraryNotFound, the JSON report,
    exit 1."""
    python = image_python("voxplane/gpu_preflight")
    staged = tmp_path / "opt-voxplane"
    (staged / "voxplane").mkdir(parents=True)
    (staged / "voxplane" / "__init__.py").write_text("")
    shutil.copytree(CONTEXT, staged / "voxplane" / "gpu_preflight", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    report = tmp_path / "termination-log"
    run = subprocess.run([str(python), "-m", "voxplane.gpu_preflight", "--gpus", "1", "--product", "NVIDIA-L4",
                          "--memory-gib", "24", "--report", str(report)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, env={"PYTHONPATH": str(staged), "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
    assert run.returncode == 1, run.stderr
    [line] = run.stderr.splitlines()
    assert line.startswith("gpu preflight: failed: NVML cannot be used here (NVMLError_LibraryNotFound: ")
    assert json.loads(report.read_text())["ok"] is False
