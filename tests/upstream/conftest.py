"""The upstream checks: what voxplane renders for each third-party server, held against that
server's pinned release (voxplane/manifest/servers.py). Real definitions where the release runs here
(vLLM, livekit-server, Redis), recorded facts with their source file where it cannot (facts/)."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from voxplane.deploy.render import render

from tests.support.repo import REPO

HERE = Path(__file__).resolve().parent
#: The example regions, whose render these tests hold against the servers.
REGIONS = sorted(p.stem for p in (REPO / "regions").glob("*.yaml"))


@cache
def rendered(region: str) -> tuple[dict[str, Any], ...]:
    """Every Kubernetes object of the region's render."""
    return tuple(render(region, REPO).kubernetes)


def facts(name: str) -> dict[str, Any]:
    """A recorded fact file (facts/<name>.yaml)."""
    return yaml.safe_load((HERE / "facts" / f"{name}.yaml").read_text())


def ensure(script: str, *args: str) -> str:
    """Run scripts/<script> (an installer: cached after the first run) and return its stdout; a
    failure fails the test with the installer's own last lines."""
    done = subprocess.run(["bash", str(REPO / "scripts" / script), *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"scripts/{script} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout.strip()


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    """The interpreter of the vLLM (CPU build) venv, installed by scripts/ensure-vllm-venv.sh."""
    return Path(ensure("ensure-vllm-venv.sh", "--print-path")) / "bin" / "python"
