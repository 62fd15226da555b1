"""scripts/gpu-check.sh, for real on this machine, which has no GPU: it asks NVML first, and without
a driver it says so in one line and exits 1, having installed and started nothing (its GPU path
needs a GPU: README, "GPUs checked with NVML")."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .support.repo import REPO

SCRIPT = REPO / "scripts" / "gpu-check.sh"


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cache, scratch = tmp_path / "cache", tmp_path / "tmp"
    cache.mkdir(exist_ok=True)
    scratch.mkdir(exist_ok=True)
    env = {**os.environ, "VOXPLANE_CACHE": str(cache), "TMPDIR": str(scratch)}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120)


def test_without_a_gpu_it_says_so_in_one_line_and_installs_nothing(tmp_path: Path) -> None:
    done = run(tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "gpu-check: no usable GPU (NVMLError_LibraryNotFound: NVML Shared Library Not Found): no NVIDIA driver is "
        "visible here (a node without a GPU, or a container the NVIDIA container toolkit gave none); nothing "
        "installed or started"]
    assert list((tmp_path / "cache").iterdir()) == [] and list((tmp_path / "tmp").iterdir()) == []


def test_help_and_bad_arguments(tmp_path: Path) -> None:
    helped = run(tmp_path, "--help")
    assert helped.returncode == 0 and helped.stderr.startswith("Usage: scripts/gpu-check.sh")
    bad = run(tmp_path, "--gpu-memory-utilization", "1.5")
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == ["gpu-check: error: --gpu-memory-utilization must be in (0, 1], got 1.5"]
