"""The GPU preflight image (voxplane/gpu_preflight, built by the region stack; its build context's
own checks are tests/test_image_contexts.py): its lock is the project's nvidia-ml-py, every model
pod runs its pushed digest, and from the image's layout, with no GPU here, it says so in one line."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from voxplane.components.images import build_context_hash
from voxplane.components.inference import PREFLIGHT_CONTEXT
from voxplane.desired.inference import PREFLIGHT_REPOSITORY
from voxplane.deploy.render import PLACEHOLDER_DIGEST, render

from .support.image_context import context_python, stage
from .support.repo import REPO

CONTEXT = Path(PREFLIGHT_CONTEXT)


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
    python = context_python(PREFLIGHT_CONTEXT)
    staged = stage(PREFLIGHT_CONTEXT, tmp_path / "opt-voxplane")
    report = tmp_path / "termination-log"
    run = subprocess.run([str(python), "-m", "voxplane.gpu_preflight", "--gpus", "1", "--product", "NVIDIA-L4",
                          "--memory-gib", "24", "--report", str(report)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, env={"PYTHONPATH": str(staged), "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
    assert run.returncode == 1, run.stderr
    [line] = run.stderr.splitlines()
    assert line.startswith("gpu preflight: failed: NVML cannot be used here (NVMLError_LibraryNotFound: ")
    assert json.loads(report.read_text())["ok"] is False
